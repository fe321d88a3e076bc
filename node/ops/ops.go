// Package ops is what an operator does to a running node: read its status,
// replay a window of records to a sink, and inspect, re-drive or purge the
// DLQ. Replays and re-drives run inside the node as jobs, so they go on when
// the CLI that started them is closed, and they show in the metrics.
package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/rego"
)

// Component is a configured source or sink.
type Component struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Detail says where it reads or writes (a logstore, a subscription, a URL).
	Detail string `json:"detail,omitempty"`
	// Progress names a source's metrics that status shows.
	Progress component.Progress `json:"-"`
}

// Deps are what ops reads and acts on.
type Deps struct {
	Node     string
	Queue    *queue.Queue
	Cluster  *cluster.Cluster // nil on a single node
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Actors   func() []actors.Status
	Policies *rego.Engine // nil without policies
	Sources  []Component
	Sinks    []Component
	// Insecure are the config's settings that turn a protection off by
	// name, on or off: status shows those on, sluice_insecure every one.
	Insecure []InsecureSetting
}

// Manager runs the jobs of one node.
type Manager struct {
	deps Deps
	ctx  context.Context // the node's lifetime: jobs end with it
	m    *metrics
	rate *rateSampler

	mu    sync.Mutex
	jobs  map[string]*Job
	past  []JobStatus        // this node's jobs of its earlier lives (jobstore.go)
	jobKV jetstream.KeyValue // the job store, once made
	wg    sync.WaitGroup
}

// New makes a manager whose jobs end when ctx does.
func New(ctx context.Context, deps Deps) (*Manager, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{deps: deps, ctx: ctx, jobs: map[string]*Job{}}
	var err error
	if m.m, err = newMetrics(deps.Registry, m); err != nil {
		return nil, err
	}
	if err := registerInsecure(deps.Registry, deps.Insecure); err != nil {
		return nil, err
	}
	m.rate = newRateSampler(deps.Registry)
	go m.rate.run(ctx)
	if deps.Queue != nil {
		past, err := m.loadPastJobs()
		if err != nil {
			deps.Logger.Warn("reading the jobs of this node's last run failed: jobs a restart cut off are not shown", "err", err)
		}
		m.mu.Lock()
		m.past = past
		m.mu.Unlock()
		go m.warnOrphans(ctx)
	}
	return m, nil
}

// Wait blocks until every job has stopped (after the node's ctx ended).
func (m *Manager) Wait() { m.wg.Wait() }

// Job kinds.
const (
	KindReplay  = "replay"
	KindRedrive = "redrive"
)

// Job states.
const (
	JobRunning   = "running"
	JobDone      = "done"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
	// JobPartial: the job ended but sent less than it planned (records of
	// its window went while it ran); Error says what is missing.
	JobPartial = "partial"
)

// Job is a replay or a re-drive running in the node.
type Job struct {
	ID      string
	Kind    string
	Request any
	Total   Count // what the job set out to send
	Started time.Time

	records, bytes, skipped atomic.Int64
	cancel                  context.CancelFunc

	mu       sync.Mutex
	state    string
	err      string
	note     string
	finished time.Time
}

// Count is a number of records and their bytes.
type Count struct {
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
}

// JobStatus is a snapshot of a job.
type JobStatus struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	State    string    `json:"state"`
	Request  any       `json:"request"`
	Total    Count     `json:"total"`
	Done     Count     `json:"done"`
	Skipped  int64     `json:"skipped,omitempty"`
	Note     string    `json:"note,omitempty"`
	Error    string    `json:"error,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}

// Status returns a snapshot of j.
func (j *Job) Status() JobStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return JobStatus{ID: j.ID, Kind: j.Kind, State: j.state, Request: j.Request, Total: j.Total,
		Done: Count{j.records.Load(), j.bytes.Load()}, Skipped: j.skipped.Load(), Note: j.note, Error: j.err,
		Started: j.Started, Finished: j.finished}
}

func (j *Job) setNote(note string) { j.mu.Lock(); j.note = note; j.mu.Unlock() }

func (j *Job) running() bool { j.mu.Lock(); defer j.mu.Unlock(); return j.state == JobRunning }

// start runs work as a new job.
func (m *Manager) start(kind string, req any, total Count, work func(ctx context.Context, j *Job) error) *Job {
	return m.startID(newJobID(kind), kind, req, total, work)
}

// startID runs work as a new job with the ID given.
func (m *Manager) startID(id, kind string, req any, total Count, work func(ctx context.Context, j *Job) error) *Job {
	ctx, cancel := context.WithCancel(m.ctx)
	j := &Job{ID: id, Kind: kind, Request: req, Total: total, Started: time.Now().UTC(), cancel: cancel, state: JobRunning}
	m.mu.Lock()
	m.jobs[j.ID] = j
	m.mu.Unlock()
	m.m.jobs.WithLabelValues(kind).Inc()
	m.deps.Logger.Info("job started", "job", j.ID, "kind", kind, "records", total.Records, "bytes", total.Bytes)
	m.saveJob(j.Status())
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		saving := make(chan struct{})
		go m.keepSaving(j, saving)
		err := work(ctx, j)
		close(saving)
		j.mu.Lock()
		j.finished = time.Now().UTC()
		var short *shortError
		switch {
		case err == nil:
			j.state = JobDone
		case errors.As(err, &short):
			j.state, j.err = JobPartial, short.Error()
		case errors.Is(err, context.Canceled) && m.ctx.Err() != nil:
			j.state = JobLost
			j.err = fmt.Sprintf("the node stopped while the job ran: it had sent %d of %d records; run it again for the rest", j.records.Load(), j.Total.Records)
		case errors.Is(err, context.Canceled):
			j.state = JobCancelled
		default:
			j.state, j.err = JobFailed, err.Error()
		}
		state := j.state
		j.mu.Unlock()
		m.saveJob(j.Status())
		m.m.jobs.WithLabelValues(kind).Dec()
		m.deps.Logger.Info("job ended", "job", j.ID, "state", state, "records", j.records.Load(), "err", err)
	}()
	return j
}

// shortError ends a job that sent less than it planned: JobPartial.
type shortError struct{ msg string }

func (e *shortError) Error() string { return e.msg }

// progress counts records and bytes a job has sent.
func (m *Manager) progress(j *Job, records, bytes int) {
	j.records.Add(int64(records))
	j.bytes.Add(int64(bytes))
	m.m.records.WithLabelValues(j.Kind).Add(float64(records))
	m.m.bytes.WithLabelValues(j.Kind).Add(float64(bytes))
}

// ErrNoJob is returned for an unknown job ID.
var ErrNoJob = errors.New("no such job")

// Job returns a job by ID.
func (m *Manager) Job(id string) (*Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoJob, id)
	}
	return j, nil
}

// Jobs lists the jobs of this node's life, newest first.
func (m *Manager) Jobs() []JobStatus {
	m.mu.Lock()
	out := make([]JobStatus, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, j.Status())
	}
	out = append(out, m.past...)
	m.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Started.After(out[b].Started) })
	return out
}

// Cancel stops a running job; what it sent stays sent.
func (m *Manager) Cancel(id string) (JobStatus, error) {
	j, err := m.Job(id)
	if err != nil {
		return JobStatus{}, err
	}
	j.cancel()
	for i := 0; i < 100 && j.running(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return j.Status(), nil
}

func newJobID(kind string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return kind + "-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

func (m *Manager) sink(name string) (Component, bool) {
	for _, s := range m.deps.Sinks {
		if s.Name == name {
			return s, true
		}
	}
	return Component{}, false
}
