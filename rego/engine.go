package rego

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fastjson"
)

// Options configure an Engine.
type Options struct {
	// EvalTimeout limits one evaluation (one record); default 1s.
	EvalTimeout time.Duration
	Logger      *slog.Logger
	// FullEval turns the fast path off: every record goes through OPA's
	// evaluator (to compare the two, or to rule the fast path out).
	FullEval bool
	Metrics  prometheus.Registerer
}

// Engine holds the current policy set of a directory and swaps it whole on
// reload: an evaluation sees one set, never a half-loaded one.
type Engine struct {
	dir     string
	opts    Options
	log     *slog.Logger
	set     atomic.Pointer[policySet]
	parsers fastjson.ParserPool
	records sync.Pool // *recordScratch, each with its own parser

	mu     sync.Mutex
	status Status

	reloads      *prometheus.CounterVec
	reloadFailed prometheus.Gauge
	evaluations  *prometheus.CounterVec
	planned      prometheus.Counter // evaluations{path="plan"}, resolved once
	evaluated    prometheus.Counter // evaluations{path="opa"}
}

// Status says which policies run and how the last reload went.
type Status struct {
	Dir          string    `json:"dir"`
	Version      string    `json:"version"`
	Files        []string  `json:"files"`
	Schemas      []string  `json:"schemas"`
	LoadedAt     time.Time `json:"loaded_at"`
	LastReloadAt time.Time `json:"last_reload_at,omitzero"`
	LastError    string    `json:"last_error,omitempty"` // the last reload failed; the old set still runs
	// FastPath says, per schema policy, whether records skip OPA's
	// evaluator ("plan") or why not.
	FastPath map[string]string `json:"fast_path,omitempty"`
}

// Load compiles every policy of dir. A policy that does not compile, calls
// a forbidden built-in or an unknown function stops the load with the file,
// line and reason.
func Load(dir string, opts Options) (*Engine, error) {
	if opts.EvalTimeout <= 0 {
		opts.EvalTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = prometheus.NewRegistry()
	}
	e := &Engine{dir: dir, opts: opts, log: opts.Logger.With("policies", dir),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_policy_reloads_total", Help: "Policy reloads, by result (ok, failed).",
		}, []string{"result"}),
		reloadFailed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_policy_reload_failed", Help: "1 when the last policy reload failed and the previous set still runs.",
		}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_policy_evaluations_total", Help: "Schema policy evaluations, by path: plan (the fast path) or opa (OPA's evaluator).",
		}, []string{"path"}),
	}
	e.planned = e.evaluations.WithLabelValues("plan")
	e.evaluated = e.evaluations.WithLabelValues("opa")
	e.reloads.WithLabelValues("ok")
	e.reloads.WithLabelValues("failed")
	set, err := compile(dir)
	if err != nil {
		return nil, err
	}
	for _, c := range []prometheus.Collector{e.reloads, e.reloadFailed, e.evaluations} {
		if err := opts.Metrics.Register(c); err != nil {
			return nil, err
		}
	}
	e.install(set)
	return e, nil
}

func (e *Engine) current() *policySet { return e.set.Load() }

func (e *Engine) install(set *policySet) {
	e.set.Store(set)
	e.mu.Lock()
	e.status = Status{Dir: e.dir, Version: set.version, Files: set.files, Schemas: set.schemaNames(), LoadedAt: time.Now(), LastReloadAt: e.status.LastReloadAt, FastPath: set.fastPath(e.opts.FullEval)}
	e.mu.Unlock()
}

// Reload compiles the directory again. On failure the old set keeps
// running, and the error is kept for /readyz and the metrics.
func (e *Engine) Reload() error {
	set, err := compile(e.dir)
	e.mu.Lock()
	e.status.LastReloadAt = time.Now()
	e.mu.Unlock()
	if err != nil {
		e.reloads.WithLabelValues("failed").Inc()
		e.reloadFailed.Set(1)
		e.mu.Lock()
		e.status.LastError = err.Error()
		e.mu.Unlock()
		e.log.Error("policy reload failed; the previous policies keep running", "version", e.current().version, "err", err)
		return err
	}
	if set.version == e.current().version {
		e.reloadFailed.Set(0)
		e.mu.Lock()
		e.status.LastError = ""
		e.mu.Unlock()
		return nil
	}
	e.install(set)
	e.reloads.WithLabelValues("ok").Inc()
	e.reloadFailed.Set(0)
	e.log.Info("policies reloaded", "version", set.version, "schemas", set.schemaNames())
	return nil
}

// Status returns the current set and the last reload's result.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

// Ready is nil unless the last reload failed.
func (e *Engine) Ready() error {
	if s := e.Status(); s.LastError != "" {
		return fmt.Errorf("last policy reload failed (version %s still runs): %s", s.Version, s.LastError)
	}
	return nil
}

// Schemas lists the schema policies.
func (e *Engine) Schemas() []string { return e.current().schemaNames() }

// Watch reloads when a file in the directory changes, until ctx ends.
// Changes are gathered for a moment so an editor's save is one reload.
func (e *Engine) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policies: watch: %w", err)
	}
	defer w.Close()
	err = filepath.WalkDir(e.dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = w.Add(path)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("policies: watch %s: %w", e.dir, err)
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.Events:
			if ev.Op&fsnotify.Create != 0 {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = w.Add(ev.Name)
				}
			}
			debounce = time.After(200 * time.Millisecond)
		case err := <-w.Errors:
			e.log.Warn("policy watch", "err", err)
		case <-debounce:
			debounce = nil
			_ = e.Reload()
		}
	}
}
