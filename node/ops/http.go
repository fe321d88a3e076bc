package ops

import (
	"context"
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

// apiFunc answers one API request: a status code and the value to send
// as JSON, or an error errorCode turns into its code.
type apiFunc func(*http.Request) (int, any, error)

// Mount adds the operations API (/api/v1/…) to the admin server.
func (m *Manager) Mount(handle Handle) {
	routes := []struct {
		pattern string
		f       apiFunc
	}{
		{"GET /api/v1/status", m.apiStatus},
		{"GET /api/v1/jobs", m.apiJobs},
		{"GET /api/v1/jobs/{id}", m.apiJob},
		{"DELETE /api/v1/jobs/{id}", m.apiCancel},
		{"POST /api/v1/replays", startRoute(m.Replay)},
		{"GET /api/v1/backlog", m.apiBacklog},
		{"POST /api/v1/backlog/move", startRoute(m.MoveBacklog)},
		{"POST /api/v1/backlog/drop", m.apiDrop},
		{"GET /api/v1/dlq", m.apiDLQ},
		{"GET /api/v1/dlq/{seq}", m.apiDLQShow},
		{"POST /api/v1/dlq/redrive", startRoute(m.redriveFromBody)},
		{"POST /api/v1/dlq/purge", m.apiPurge},
	}
	for _, r := range routes {
		handle(r.pattern, serveJSON(r.f))
	}
}

func serveJSON(f apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, v, err := f(r)
		if err != nil {
			code, v = errorCode(err), map[string]string{"error": err.Error()}
		}
		writeJSON(w, code, v)
	})
}

// startRoute answers a request that starts a job (a replay, move or
// re-drive): the request body is a Req; the answer is the plan and the job,
// if one started.
func startRoute[Req, P any](start func(context.Context, Req) (P, *Job, error)) apiFunc {
	return func(r *http.Request) (int, any, error) {
		var req Req
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		plan, j, err := start(r.Context(), req)
		if err != nil {
			return 0, nil, err
		}
		return started(plan, j)
	}
}

func (m *Manager) apiStatus(r *http.Request) (int, any, error) {
	return http.StatusOK, m.Status(r.Context()), nil
}

func (m *Manager) apiJobs(*http.Request) (int, any, error) {
	return http.StatusOK, m.Jobs(), nil
}

func (m *Manager) apiJob(r *http.Request) (int, any, error) {
	j, err := m.Job(r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, j.Status(), nil
}

func (m *Manager) apiCancel(r *http.Request) (int, any, error) {
	st, err := m.Cancel(r.PathValue("id"))
	return http.StatusOK, st, err
}

func (m *Manager) apiBacklog(r *http.Request) (int, any, error) {
	orphans, err := m.Orphans(r.Context())
	if orphans == nil {
		orphans = []Orphan{}
	}
	return http.StatusOK, orphans, err
}

func (m *Manager) apiDrop(r *http.Request) (int, any, error) {
	var req DropRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	d, err := m.DropBacklog(r.Context(), req)
	return http.StatusOK, d, err
}

func (m *Manager) apiDLQ(r *http.Request) (int, any, error) {
	f, err := filterFromQuery(r)
	if err != nil {
		return 0, nil, err
	}
	groups, err := m.DLQGroups(r.Context(), f)
	return http.StatusOK, groups, err
}

func (m *Manager) apiDLQShow(r *http.Request) (int, any, error) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		return 0, nil, badRequest("DLQ record ID %q is not a number (dlq list shows them)", r.PathValue("seq"))
	}
	e, err := m.DLQShow(r.Context(), seq)
	return http.StatusOK, e, err
}

// redriveBody is the body of POST /api/v1/dlq/redrive.
type redriveBody struct {
	DLQFilter
	DryRun bool `json:"dry_run"`
}

func (m *Manager) redriveFromBody(ctx context.Context, req redriveBody) (*RedrivePlan, *Job, error) {
	return m.Redrive(ctx, req.DLQFilter, req.DryRun)
}

func (m *Manager) apiPurge(r *http.Request) (int, any, error) {
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
