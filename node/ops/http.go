package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Handle is how the node's admin server takes a route.
type Handle func(pattern string, h http.Handler)

// Mount adds the operations API (/api/v1/…) to the admin server.
func (m *Manager) Mount(handle Handle) {
	route := func(pattern string, f func(*http.Request) (int, any, error)) {
		handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			code, v, err := f(r)
			if err != nil {
				code, v = errorCode(err), map[string]string{"error": err.Error()}
			}
			writeJSON(w, code, v)
		}))
	}
	route("GET /api/v1/status", func(r *http.Request) (int, any, error) {
		return http.StatusOK, m.Status(r.Context()), nil
	})
	route("GET /api/v1/jobs", func(r *http.Request) (int, any, error) {
		return http.StatusOK, m.Jobs(), nil
	})
	route("GET /api/v1/jobs/{id}", func(r *http.Request) (int, any, error) {
		j, err := m.Job(r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, j.Status(), nil
	})
	route("DELETE /api/v1/jobs/{id}", func(r *http.Request) (int, any, error) {
		st, err := m.Cancel(r.PathValue("id"))
		return http.StatusOK, st, err
	})
	route("POST /api/v1/replays", func(r *http.Request) (int, any, error) {
		var req ReplayRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		plan, j, err := m.Replay(r.Context(), req)
		if err != nil {
			return 0, nil, err
		}
		return started(plan, j)
	})
	route("GET /api/v1/backlog", func(r *http.Request) (int, any, error) {
		orphans, err := m.Orphans(r.Context())
		if orphans == nil {
			orphans = []Orphan{}
		}
		return http.StatusOK, orphans, err
	})
	route("POST /api/v1/backlog/move", func(r *http.Request) (int, any, error) {
		var req MoveRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		plan, j, err := m.MoveBacklog(r.Context(), req)
		if err != nil {
			return 0, nil, err
		}
		return started(plan, j)
	})
	route("POST /api/v1/backlog/drop", func(r *http.Request) (int, any, error) {
		var req DropRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		d, err := m.DropBacklog(r.Context(), req)
		return http.StatusOK, d, err
	})
	route("GET /api/v1/dlq", func(r *http.Request) (int, any, error) {
		f, err := filterFromQuery(r)
		if err != nil {
			return 0, nil, err
		}
		groups, err := m.DLQGroups(r.Context(), f)
		return http.StatusOK, groups, err
	})
	route("GET /api/v1/dlq/{seq}", func(r *http.Request) (int, any, error) {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil {
			return 0, nil, badRequest("DLQ record ID %q is not a number (dlq list shows them)", r.PathValue("seq"))
		}
		e, err := m.DLQShow(r.Context(), seq)
		return http.StatusOK, e, err
	})
	route("POST /api/v1/dlq/redrive", func(r *http.Request) (int, any, error) {
		var req struct {
			DLQFilter
			DryRun bool `json:"dry_run"`
		}
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		plan, j, err := m.Redrive(r.Context(), req.DLQFilter, req.DryRun)
		if err != nil {
			return 0, nil, err
		}
		return started(plan, j)
	})
	route("POST /api/v1/dlq/purge", func(r *http.Request) (int, any, error) {
		var req struct {
			DLQFilter
			Confirm bool `json:"confirm"`
		}
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		if !req.Confirm {
			return 0, nil, badRequest(`purge deletes records for good: send "confirm": true`)
		}
		n, err := m.PurgeDLQ(r.Context(), req.DLQFilter)
		return http.StatusOK, map[string]int{"purged": n}, err
	})
}

// StartResponse answers a replay or re-drive: the plan, and the job when
// one started (none for a dry run or nothing to do).
type StartResponse[P any] struct {
	Plan P          `json:"plan"`
	Job  *JobStatus `json:"job,omitempty"`
}

func started[P any](plan P, j *Job) (int, any, error) {
	if j == nil {
		return http.StatusOK, StartResponse[P]{Plan: plan}, nil
	}
	st := j.Status()
	return http.StatusAccepted, StartResponse[P]{Plan: plan, Job: &st}, nil
}

type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error { return &requestError{fmt.Sprintf(format, args...)} }

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

func filterFromQuery(r *http.Request) (DLQFilter, error) {
	q := r.URL.Query()
	f := DLQFilter{Stage: q.Get("stage"), Name: q.Get("name"), Reason: q.Get("reason")}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return f, badRequest("since: %v", err)
		}
		f.Since = t
	}
	return f, nil
}

func errorCode(err error) int {
	var re *requestError
	var refusedErr *RefusedError
	switch {
	case errors.As(err, &re):
		return http.StatusBadRequest
	case errors.As(err, &refusedErr):
		return http.StatusConflict
	case errors.Is(err, ErrNoJob), errors.Is(err, jetstream.ErrMsgNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
