// Package transform is the stage between RAW and OUT: it runs the Rego
// policies on every record of a RAW batch, publishes at most one OUT batch
// per sink, dead-letters what a policy cannot handle, and acks the RAW batch
// only when all of that is stored.
package transform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
	"github.com/sluicehq/sluice/rego"
)

// Config is the `transform:` section.
type Config struct {
	// Workers is how many RAW batches are evaluated at once; default 2.
	Workers int `yaml:"workers"`
	// MaxDeliveries: a RAW batch the stage crashed on this often is
	// dead-lettered; default 5.
	MaxDeliveries int `yaml:"max_deliveries"`
	// EvalTimeout limits the policy's time on one record; default 1s. A
	// record is dead-lettered only after timing out twice, so a busy
	// machine (a GC pause, a loaded core) does not dead-letter good records.
	EvalTimeout conf.Duration `yaml:"eval_timeout"`
	// AckWait is how long a RAW batch handed to a node that died waits
	// before JetStream hands it to another; default 30s.
	AckWait conf.Duration `yaml:"ack_wait"`
}

// DecodeConfig decodes the transform section (which may be empty).
func DecodeConfig(n *yaml.Node) (Config, error) {
	var c Config
	if n != nil && n.Kind != 0 {
		if err := conf.DecodeStrict(n, "", &c); err != nil {
			return c, conf.Prefix("transform", err)
		}
	}
	c.SetDefaults()
	if c.Workers < 1 || c.Workers > 64 {
		return c, conf.Errorf("transform.workers", "%d: want 1 to 64", c.Workers)
	}
	// The lease is renewed every ack_wait/3; a renewal must reach the
	// server with time to spare on a loaded node.
	if c.AckWait < conf.Duration(minAckWait) {
		return c, conf.Errorf("transform.ack_wait", "%s: want at least %s (a held RAW batch's lease is renewed every ack_wait/3)", c.AckWait, minAckWait)
	}
	// An evaluation cannot be interrupted by the stage; both tries of a
	// record fit one lease, so a record alone never outlasts it even when a
	// renewal is late or lost.
	if 2*c.EvalTimeout >= c.AckWait {
		return c, conf.Errorf("transform.eval_timeout", "%s: twice it (a record that times out is tried again) must be less than transform.ack_wait (%s)", c.EvalTimeout, c.AckWait)
	}
	return c, nil
}

// minAckWait is the shortest ack_wait the keep-alive can hold.
const minAckWait = time.Second

// SetDefaults fills in what the config left out.
func (c *Config) SetDefaults() {
	if c.Workers == 0 {
		c.Workers = 2
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = 5
	}
	if c.EvalTimeout == 0 {
		c.EvalTimeout = conf.Duration(time.Second)
	}
	if c.AckWait == 0 {
		c.AckWait = conf.Duration(30 * time.Second)
	}
}

// Deps are what the transform is given.
type Deps struct {
	Queue   *queue.Queue
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Engine  *rego.Engine
	// Sinks maps each configured sink's name to its type.
	Sinks map[string]string
	// Types are the sink types; an output that names no sink goes to the
	// one sink of the first type that takes it.
	Types *component.Registry
}

// Transform is the transform actor.
type Transform struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	m      *metrics
	router *component.Router // the sink of each output
	bodies batch.Bodies      // OUT batch bodies, recycled once acked
}

// New builds the transform.
func New(cfg Config, deps Deps) (*Transform, error) {
	cfg.SetDefaults()
	if cfg.AckWait <= 0 {
		return nil, fmt.Errorf("transform: ack_wait %s: want more than 0", cfg.AckWait)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("transform: metrics: %w", err)
	}
	return &Transform{cfg: cfg, deps: deps, log: deps.Logger.With("stage", "transform"), m: m, router: component.NewRouter(deps.Types, deps.Sinks)}, nil
}

// Run runs Workers goroutines; each fetches a RAW batch only when it is
// free to work on it and owns it until it is acked, so evaluation overlaps
// with waiting for acks and no batch waits unowned.
func (t *Transform) Run(ctx context.Context, h *actors.Health) error {
	cons, err := t.deps.Queue.Consumer(ctx, queue.ConsumerConfig{
		Stream: queue.StreamRaw, Durable: "transform", Subject: "raw.>",
		AckWait: t.cfg.AckWait.D(), MaxAckPending: t.cfg.Workers * 4, MaxDeliveries: t.cfg.MaxDeliveries,
		Stage: queue.StageTransform, Name: "transform",
	})
	if err != nil {
		return fmt.Errorf("transform: %w", err)
	}
	defer cons.Close()
	// One worker failing (or panicking: the runtime recovers only the actor's
	// own goroutine) stops the others, so the whole actor restarts.
	workCtx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, t.cfg.Workers)
	var wg sync.WaitGroup
	for i := 0; i < t.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("transform worker panicked: %v", r)
					stop()
				}
			}()
			err := t.work(workCtx, h, cons)
			if err != nil {
				stop()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}

// work is one worker's loop.
func (t *Transform) work(ctx context.Context, h *actors.Health, cons *queue.Consumer) error {
	var s scratch
	for ctx.Err() == nil {
		d, err := cons.Next(ctx, time.Second)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, queue.ErrNoMessage):
			continue
		case err != nil:
			return fmt.Errorf("transform: %w", err)
		}
		if err := t.handle(ctx, h, d, &s); err != nil {
			_ = d.Nak(time.Second)
			if ctx.Err() == nil {
				return err
			}
		}
	}
	return nil
}

// scratch is a worker's buffers, kept from batch to batch.
type scratch struct {
	arena []byte // a batch's OUT records, one after another, which outMessages copies into the batches
	data  []byte // an output's data, as the policy wrote it, until it is copied into arena
}

// handle transforms one RAW batch. A nil return means it is acked; an
// error means it is not (it comes back later).
func (t *Transform) handle(ctx context.Context, h *actors.Health, d *queue.Delivery, s *scratch) error {
	defer t.keepAlive(d)()
	recs, err := batch.Decode(d.Data)
	if err != nil {
		t.m.dlq.WithLabelValues("corrupt").Inc()
		if err := t.deps.Queue.DeadLetterBatch(ctx, queue.StageTransform, "transform", d, "not a record batch: "+err.Error()); err != nil {
			return err
		}
		return d.Ack()
	}
	t.m.recordsIn.Add(float64(len(recs)))
	schemas, err := t.schemas(ctx, d)
	if err != nil {
		// The event policy decides for the whole batch: each record goes
		// to the DLQ on its own, named, to be re-driven with the event.
		label := "event_policy"
		if errors.Is(err, rego.ErrTimeout) {
			label = "eval_timeout"
		}
		t.m.dlq.WithLabelValues(label).Add(float64(len(recs)))
		dead := make([]queue.DeadRecord, len(recs))
		for i, rec := range recs {
			id := batch.RecordID(d.ID, i)
			dead[i] = queue.DeadRecord{Stage: queue.StageTransform, Name: "transform", RecordID: id,
				Reason: fmt.Sprintf("record %s: %v", id, err), Origin: d.Subject, Meta: d.Meta(), Data: rec}
		}
		if err := t.deps.Queue.DeadLetter(ctx, dead); err != nil {
			return fmt.Errorf("transform: batch %s: %w", d.ID, err)
		}
		return d.Ack()
	}
	if len(schemas) == 0 {
		t.m.dropped.WithLabelValues("").Add(float64(len(recs))) // the event policy reads nothing of it
		return d.Ack()
	}
	perSink := map[string][][]byte{}
	var dead []queue.DeadRecord
	// Room for every record and its output's fields: the records already
	// written keep aliasing the old array if it has to grow.
	s.arena = slices.Grow(s.arena[:0], len(d.Data)+len(recs)*256)
	for i, rec := range recs {
		id := batch.RecordID(d.ID, i)
		routed, err := t.transformRecord(ctx, schemas, rec, perSink, s)
		if err != nil {
			label := "policy_error"
			switch {
			case errors.Is(err, errInvalidOutput):
				label = "invalid_output"
			case errors.Is(err, rego.ErrTimeout):
				label = "eval_timeout"
			}
			t.m.dlq.WithLabelValues(label).Inc()
			dead = append(dead, queue.DeadRecord{Stage: queue.StageTransform, Name: "transform", RecordID: id,
				Reason: fmt.Sprintf("record %s: %v", id, err), Origin: d.Subject, Meta: d.Meta(), Data: rec})
			continue
		}
		if !routed {
			for _, s := range schemas {
				t.m.dropped.WithLabelValues(s).Inc()
			}
		}
	}
	if len(dead) > 0 {
		if err := t.deps.Queue.DeadLetter(ctx, dead); err != nil {
			return fmt.Errorf("transform: batch %s: %w", d.ID, err)
		}
	}
	if msgs := t.outMessages(d, perSink); len(msgs) > 0 {
		if err := t.publish(ctx, h, msgs); err != nil {
			return fmt.Errorf("transform: batch %s: %w", d.ID, err)
		}
		for _, b := range msgs {
			t.bodies.Release(b.Body)
		}
	}
	return d.Ack()
}

// keepAlive renews d's lease every AckWait/3 until the returned stop is
// called, so a batch whose evaluation, dead-lettering or publishing takes
// longer than AckWait is neither sent again (work done twice) nor counted
// towards MaxDeliveries. stop returns once no renewal is under way, so
// none follows the batch's ack or nak.
func (t *Transform) keepAlive(d *queue.Delivery) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(t.cfg.AckWait.D() / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if err := d.InProgress(); err != nil {
					t.log.Warn("renewing a RAW batch's lease failed; JetStream may send it again", "batch", d.ID, "err", err)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// publish stores a batch's outputs. While OUT is full or does not answer
// (a cluster without its quorum) it retries (the keep-alive of handle holds
// the RAW batch meanwhile, so JetStream neither redelivers nor counts it):
// the buffer's state pauses the stage, it never drops or dead-letters. A retry sends only the outputs not stored yet: past the
// duplicate window an output sent again would be stored twice.
func (t *Transform) publish(ctx context.Context, h *actors.Health, msgs []*batch.Batch) error {
	wait := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		err := t.deps.Queue.Publish(ctx, msgs)
		if err == nil {
			h.SetHealthy()
			return nil
		}
		full, unanswered := errors.Is(err, queue.ErrBufferFull), errors.Is(err, queue.ErrUnavailable)
		if !(full || unanswered) || ctx.Err() != nil {
			return err
		}
		var perr *queue.PublishError
		if !errors.As(err, &perr) {
			return err
		}
		failed := make([]*batch.Batch, 0, len(perr.Failed))
		for _, i := range perr.Failed {
			failed = append(failed, msgs[i])
		}
		msgs = failed
		if full {
			h.SetUnhealthy("OUT is full: waiting for sinks to deliver (" + err.Error() + ")")
		} else {
			h.SetUnhealthy("OUT does not answer: waiting for it, the batch held (" + err.Error() + ")")
		}
		if !wait.Wait(ctx) {
			return ctx.Err()
		}
	}
}

var errInvalidOutput = errors.New("invalid output")

// transformRecord appends a record's outputs to perSink, written into
// s.arena. It adds nothing unless every output of the record is valid.
// False: no policy routed it.
func (t *Transform) transformRecord(ctx context.Context, schemas []string, rec []byte, perSink map[string][][]byte, s *scratch) (bool, error) {
	type routed struct {
		sink string
		body []byte
	}
	var outs []routed
	for _, schema := range schemas {
		start := time.Now()
		res, err := t.deps.Engine.OutputsInto(ctx, schema, rec, &s.data)
		if errors.Is(err, rego.ErrTimeout) {
			t.m.evalTimeouts.Inc()
			res, err = t.deps.Engine.OutputsInto(ctx, schema, rec, &s.data) // once more before calling it the policy's fault
		}
		t.m.evalSeconds.Observe(time.Since(start).Seconds())
		if err != nil {
			return false, err
		}
		for i, o := range res {
			sink, err := t.router.SinkFor(o.Sink, &res[i].Output) // res[i]: &o would move o to the heap
			if err != nil {
				return false, fmt.Errorf("%w: policy schema.%s, output %d: %v", errInvalidOutput, schema, i, err)
			}
			start := len(s.arena)
			buf, err := o.Output.AppendJSON(s.arena)
			if err != nil {
				s.arena = s.arena[:start]
				return false, fmt.Errorf("%w: policy schema.%s, output %d: %v", errInvalidOutput, schema, i, err)
			}
			s.arena = buf
			outs = append(outs, routed{sink, buf[start:len(buf):len(buf)]})
		}
	}
	for _, o := range outs {
		perSink[o.sink] = append(perSink[o.sink], o.body)
		t.m.outputs.WithLabelValues(o.sink).Inc()
	}
	return len(outs) > 0, nil
}

// schemas says which schema policies read this batch: the source's fixed
// schema, else what data.event.src says for the batch's source event.
func (t *Transform) schemas(ctx context.Context, d *queue.Delivery) ([]string, error) {
	meta := d.Meta()
	if s := meta.Schema; s != "" {
		return []string{s}, nil
	}
	event := meta.Event
	if event == "" {
		return nil, errors.New("batch has neither a fixed schema nor a source event")
	}
	srcs, err := t.deps.Engine.EventSources(ctx, []byte(event))
	if errors.Is(err, rego.ErrTimeout) {
		t.m.evalTimeouts.Inc()
		srcs, err = t.deps.Engine.EventSources(ctx, []byte(event)) // once more, as for a record
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range srcs {
		names = append(names, s.Schema)
	}
	sort.Strings(names)
	return names, nil
}

// outMessages makes at most one OUT batch per sink, with an ID derived from
// the RAW batch, so a redelivered RAW batch is deduplicated by JetStream.
// It keeps the RAW batch's source, times and replay job.
func (t *Transform) outMessages(d *queue.Delivery, perSink map[string][][]byte) []*batch.Batch {
	sinks := make([]string, 0, len(perSink))
	for s := range perSink {
		sinks = append(sinks, s)
	}
	sort.Strings(sinks)
	raw := d.Meta()
	// A replay through the transform re-runs the policies for one sink only.
	only := raw.ReplaySink
	msgs := make([]*batch.Batch, 0, len(sinks))
	for _, sink := range sinks {
		if only != "" && sink != only {
			continue
		}
		recs := perSink[sink]
		msgs = append(msgs, &batch.Batch{Subject: queue.OutSubject(sink), ID: d.ID + "/" + sink, Body: t.bodies.Encode(recs), Meta: batch.Meta{
			RawID: d.ID, Sink: sink, Count: len(recs), Encoded: batch.EncodedDataLast,
			Source: raw.Source, FirstTime: raw.FirstTime, LastTime: raw.LastTime, FetchedAt: raw.FetchedAt, Replay: raw.Replay,
		}})
	}
	return msgs
}
