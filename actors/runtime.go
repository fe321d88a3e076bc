// Package actors runs sluice's actors under supervision.
//
// An actor is one goroutine that owns its state, takes work from a stream or
// a timer and emits to a stream. The runtime is a suture supervision tree
// with one supervisor per stage, so a stage can be stopped on its own:
// fetchers first, then the transform, then the sinks, letting in-flight work
// drain downstream. On top of suture it adds exponential backoff between
// restarts of one actor and a health report for /readyz.
package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thejerf/suture/v4"
)

// Actor is a long-lived part of the node. Run returns nil when ctx is done,
// or an error (a panic counts as one) after which it is restarted.
type Actor interface {
	Run(ctx context.Context, h *Health) error
}

// ActorFunc adapts a function to Actor.
type ActorFunc func(ctx context.Context, h *Health) error

func (f ActorFunc) Run(ctx context.Context, h *Health) error { return f(ctx, h) }

// Stage orders shutdown: fetchers stop first, sinks last.
type Stage int

const (
	StageFetch Stage = iota
	StageTransform
	StageSink
	numStages
)

func (s Stage) String() string {
	return [...]string{"fetch", "transform", "sink"}[s]
}

// Backoff bounds the wait between restarts of a failing actor.
type Backoff struct {
	Min, Max time.Duration
	// Reset: an actor that ran this long before failing starts again from Min.
	Reset time.Duration
}

// Runtime supervises every actor of a node.
type Runtime struct {
	log     *slog.Logger
	backoff Backoff
	sups    [numStages]*suture.Supervisor
	cancels [numStages]context.CancelFunc
	done    [numStages]<-chan error
	gates   [numStages]Gate // nil: the stage's actors always run

	mu     sync.Mutex
	health []*Health

	restarts *prometheus.CounterVec
	up       *prometheus.GaugeVec
}

// NewRuntime makes an empty runtime; reg receives its metrics.
func NewRuntime(log *slog.Logger, reg prometheus.Registerer) (*Runtime, error) {
	r := &Runtime{
		log:     log,
		backoff: Backoff{Min: 100 * time.Millisecond, Max: 30 * time.Second, Reset: time.Minute},
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_actor_restarts_total", Help: "Restarts of an actor after it failed or panicked.",
		}, []string{"stage", "actor"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_actor_up", Help: "1 while the actor runs and reports itself healthy.",
		}, []string{"stage", "actor"}),
	}
	for _, c := range []prometheus.Collector{r.restarts, r.up} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("actors: metrics: %w", err)
		}
	}
	for s := range numStages {
		r.sups[s] = suture.New(Stage(s).String(), suture.Spec{
			// Backoff is ours (per actor, exponential); keep suture's own
			// whole-supervisor backoff out of the way.
			FailureThreshold: 1e9,
			Timeout:          30 * time.Second,
			EventHook:        func(e suture.Event) { log.Debug("supervisor", "event", e.String()) },
		})
	}
	return r, nil
}

// SetBackoff changes the restart backoff (tests use short ones).
func (r *Runtime) SetBackoff(b Backoff) { r.backoff = b }

// Add registers an actor. Actors added before Start start with it; added
// after, they start at once.
func (r *Runtime) Add(stage Stage, name string, a Actor) *Health {
	h := &Health{stage: stage, name: name, state: StateStarting}
	if g := r.gates[stage]; g != nil {
		a = gated{g: g, a: a}
	}
	r.mu.Lock()
	r.health = append(r.health, h)
	r.mu.Unlock()
	r.sups[stage].Add(&service{r: r, a: a, h: h})
	return h
}

// Start runs every stage in the background.
func (r *Runtime) Start(ctx context.Context) {
	for s := range numStages {
		sctx, cancel := context.WithCancel(ctx)
		r.cancels[s] = cancel
		r.done[s] = r.sups[s].ServeBackground(sctx)
	}
}

// Stop stops the stages in order — fetch, transform, sink — each given up to
// timeout to finish its in-flight work.
func (r *Runtime) Stop(timeout time.Duration) error {
	var errs []error
	for s := range numStages {
		if r.cancels[s] == nil {
			continue
		}
		r.cancels[s]()
		select {
		case err := <-r.done[s]:
			if err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("stage %s: %w", Stage(s), err))
			}
		case <-time.After(timeout):
			errs = append(errs, fmt.Errorf("stage %s did not stop within %s", Stage(s), timeout))
		}
	}
	return errors.Join(errs...)
}

// Statuses reports every actor, ordered by stage and name.
func (r *Runtime) Statuses() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, len(r.health))
	for i, h := range r.health {
		out[i] = h.Status()
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stage != out[j].Stage {
			return out[i].Stage < out[j].Stage
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Ready is nil when every actor runs and reports itself healthy; otherwise
// it says which do not and why.
func (r *Runtime) Ready() error {
	var errs []error
	for _, s := range r.Statuses() {
		switch {
		case s.State != StateRunning:
			msg := fmt.Sprintf("%s %s is %s", s.Stage, s.Name, s.State)
			if s.LastError != "" {
				msg += ": " + s.LastError
			}
			errs = append(errs, errors.New(msg))
		case s.Unhealthy != "":
			errs = append(errs, fmt.Errorf("%s %s: %s", s.Stage, s.Name, s.Unhealthy))
		}
	}
	return errors.Join(errs...)
}

// service adapts an actor to suture, adding panic recovery and backoff.
type service struct {
	r *Runtime
	a Actor
	h *Health
}

func (s *service) String() string { return s.h.stage.String() + "/" + s.h.name }

func (s *service) Serve(ctx context.Context) error {
	labels := []string{s.h.stage.String(), s.h.name}
	s.h.setState(StateRunning, "")
	s.r.up.WithLabelValues(labels...).Set(1)
	started := time.Now()
	err := s.runCatching(ctx)
	s.r.up.WithLabelValues(labels...).Set(0)
	if ctx.Err() != nil {
		s.h.setState(StateStopped, "")
		return nil
	}
	if err == nil {
		err = errors.New("returned while the node is running")
	}
	fails := s.h.failed(err, time.Since(started) > s.r.backoff.Reset)
	s.r.restarts.WithLabelValues(labels...).Inc()
	wait := s.r.backoffFor(fails)
	s.r.log.Error("actor failed; restarting", "stage", s.h.stage, "actor", s.h.name, "err", err, "restart_in", wait)
	select {
	case <-ctx.Done():
		s.h.setState(StateStopped, "")
		return nil
	case <-time.After(wait):
	}
	return err
}

func (s *service) runCatching(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return s.a.Run(ctx, s.h)
}

// backoffFor is Min·2^(fails-1), capped at Max, with ±20% jitter.
func (r *Runtime) backoffFor(fails int) time.Duration {
	d := r.backoff.Min
	for i := 1; i < fails && d < r.backoff.Max; i++ {
		d *= 2
	}
	d = min(d, r.backoff.Max)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Sleep waits for d or until ctx is done; false means ctx ended it.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
