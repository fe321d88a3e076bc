package actors

import (
	"strings"
	"sync"
	"time"
)

// State is where an actor is in its life.
type State string

const (
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	StateStopped    State = "stopped"
)

// Health is an actor's own report of how it is doing, shared with the
// runtime. An actor that runs but cannot do its job (a sink whose token is
// refused) says so with SetUnhealthy.
type Health struct {
	stage Stage
	name  string

	mu        sync.Mutex
	state     State
	unhealthy string
	lastErr   string
	restarts  int
	fails     int // consecutive failures, for backoff
	since     time.Time
}

// Status is a snapshot of one actor.
type Status struct {
	Stage     string    `json:"stage"`
	Name      string    `json:"name"`
	State     State     `json:"state"`
	Unhealthy string    `json:"unhealthy,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	Restarts  int       `json:"restarts"`
	Since     time.Time `json:"since"`
}

// SetUnhealthy marks the actor as running but not able to do its job.
// The reason is shown on /readyz: it must never contain a secret.
func (h *Health) SetUnhealthy(reason string) {
	h.mu.Lock()
	h.unhealthy = reason
	h.mu.Unlock()
}

// SetHealthy clears SetUnhealthy.
func (h *Health) SetHealthy() { h.SetUnhealthy("") }

// Name is the actor's name.
func (h *Health) Name() string { return h.name }

// Status returns a snapshot.
func (h *Health) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Status{Stage: h.stage.String(), Name: h.name, State: h.state, Unhealthy: h.unhealthy, LastError: h.lastErr, Restarts: h.restarts, Since: h.since}
}

func (h *Health) setState(s State, lastErr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state, h.since = s, time.Now()
	if s == StateRunning {
		h.unhealthy = ""
	}
	if lastErr != "" {
		h.lastErr = lastErr
	}
}

// failed records a failure and returns the count of consecutive failures.
func (h *Health) failed(err error, ranLong bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ranLong {
		h.fails = 0
	}
	h.fails++
	h.restarts++
	h.state, h.since = StateRestarting, time.Now()
	// The first line is enough for /readyz; the stack goes to the log.
	h.lastErr, _, _ = strings.Cut(err.Error(), "\n")
	return h.fails
}
