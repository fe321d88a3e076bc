// Package sink runs a sink: it fetches the sink's batches from OUT
// (subject out.<sink>), gathers them for its writer while they linger,
// bounds the batches and bytes being written, keeps every batch it holds
// alive, retries with backoff, and acks a batch once each of its records
// was accepted by the destination or stored in the DLQ. A sink (Splunk
// HEC, BigQuery) only writes: it implements Writer.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/queue"
)

// Deps are what a sink is given.
type Deps struct {
	Queue   *queue.Queue
	Logger  *slog.Logger
	Metrics prometheus.Registerer // already labelled with the sink's name
}

// Writer writes batches to a destination.
type Writer interface {
	// Write writes b's records once, ending each it can (Record.Accept,
	// Record.DeadLetter). The records it leaves are written again: at once
	// when it ended some, else after wait when wait > 0 (the destination
	// asked for it), else after the runner's backoff. ctx ends when the
	// node stops; the batch then goes back to OUT.
	Write(ctx context.Context, b *Batch) (wait time.Duration)
}

// Preparer is a Writer that prepares each delivery as it joins a batch
// (Splunk renders its events) and says how many bytes it adds to the
// batch, for Options.BatchBytes; without it, a delivery adds its body's.
type Preparer interface {
	Prepare(b *Batch, d *Delivery) (bytes int)
}

// Admitter is a Writer whose destination has parts that fail on their
// own (BigQuery's tables), so that one in trouble takes no room the
// others need.
type Admitter interface {
	// Admit decides, before d takes room in flight, whether it is written
	// now. It may end records of d (set aside: stored again in OUT). false:
	// Admit gave d back itself (Nak, Delivery.Requeue). err: ctx ended.
	Admit(ctx context.Context, d *Delivery) (bool, error)
	// Crowded is called every second while the runner waits for room in
	// flight, to free room held by parts in trouble.
	Crowded(ctx context.Context)
	// Taken is called once b has room in flight, before Write, in the
	// order the batches were fetched: the writer may start b's work there
	// (BigQuery hands the rows to their tables' writers in that order).
	Taken(b *Batch)
}

// Options say how a sink's batches are fetched, gathered and bounded.
type Options struct {
	Name    string        // the sink's
	AckWait time.Duration // of the sink's consumer; held batches are kept alive every third of it
	// FetchAtOnce bounds the deliveries taken per pull (only ones already
	// waiting: queue.Consumer.FetchReady).
	FetchAtOnce int
	// A batch is written when it reaches BatchRecords or BatchBytes, or
	// after Linger. Linger 0: each delivery is a batch of its own.
	BatchRecords, BatchBytes int
	Linger                   time.Duration
	InFlight                 int   // batches being written at once; 0: no bound
	InFlightBytes            int64 // bytes of the batches being written; 0: no bound
	// ConfirmAcks waits until JetStream confirms each ack (in a cluster:
	// stored by a quorum) before the batch's room is free again, which
	// bounds what a node cut off from the quorum sends twice.
	ConfirmAcks            bool
	MinBackoff, MaxBackoff time.Duration // between writes that ended no record
}

// maxDeliveries is how often an OUT batch may be delivered before the
// queue dead-letters it whole: the sink crashed on it each time. An
// outage does not count: held batches are kept alive.
const maxDeliveries = 10

// MaxDeliveries is the consumer's limit, for writers that give a batch
// back themselves (and must requeue it before its last delivery).
func (r *Runner) MaxDeliveries() uint64 { return maxDeliveries }

// Runner runs one sink's writer.
type Runner struct {
	opts Options
	q    *queue.Queue
	log  *slog.Logger
	reg  prometheus.Registerer
	M    *Metrics

	heldMu sync.Mutex
	held   map[*Delivery]struct{} // fetched, neither acked nor given back

	slots *semaphore.Weighted // batches in flight (nil: no bound)
	room  *semaphore.Weighted // bytes in flight (nil: no bound)
}

// New builds a runner and registers the metrics every sink exports.
func New(opts Options, deps Deps) (*Runner, error) {
	log, reg := actors.Defaults(deps.Logger, deps.Metrics)
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second // the consumer's default
	}
	r := &Runner{opts: opts, q: deps.Queue, log: log.With("sink", opts.Name), reg: reg, held: map[*Delivery]struct{}{}}
	if opts.InFlight > 0 {
		r.slots = semaphore.NewWeighted(int64(opts.InFlight))
	}
	if opts.InFlightBytes > 0 {
		r.room = semaphore.NewWeighted(opts.InFlightBytes)
	}
	m, err := newMetrics(reg, r.oldestHeldSeconds)
	if err != nil {
		return nil, fmt.Errorf("sink %q: metrics: %w", opts.Name, err)
	}
	r.M = m
	return r, nil
}

// Log is the sink's logger; Registry its metrics registerer; Queue the buffer.
func (r *Runner) Log() *slog.Logger               { return r.log }
func (r *Runner) Registry() prometheus.Registerer { return r.reg }
func (r *Runner) Queue() *queue.Queue             { return r.q }

// Run fetches and writes until ctx ends. Batches being written get a
// context of their own, ended only after the fetching stopped: a batch
// they give back is redelivered at once, and a pull request of ours still
// open would take it and, cancelled, strand it until AckWait.
func (r *Runner) Run(ctx context.Context, w Writer) error {
	cons, err := r.q.Consumer(ctx, queue.ConsumerConfig{
		Stream: queue.StreamOut, Durable: "sink-" + r.opts.Name, Subject: queue.OutSubject(r.opts.Name),
		AckWait: r.opts.AckWait, MaxAckPending: 1024, Stage: queue.StageSink, Name: r.opts.Name, MaxDeliveries: maxDeliveries,
	})
	if err != nil {
		return fmt.Errorf("sink %q: %w", r.opts.Name, err)
	}
	defer cons.Close()
	defer r.keepAlive()()
	wctx, stopWrites := context.WithCancel(context.WithoutCancel(ctx))
	f := &filler{r: r, w: w, ctx: ctx, wctx: wctx}
	defer func() { stopWrites(); f.wg.Wait() }()
	return f.loop(cons)
}

// filler gathers deliveries into the batch being filled (cur) and hands
// full batches to writers; one goroutine owns it.
type filler struct {
	r         *Runner
	w         Writer
	ctx, wctx context.Context
	wg        sync.WaitGroup
	cur       *Batch
}

func (f *filler) loop(cons *queue.Consumer) error {
	for {
		wait := time.Second
		if f.cur != nil {
			wait = max(time.Until(f.cur.lingerEnd), time.Millisecond)
		}
		fetched, err := cons.FetchReady(f.ctx, max(1, f.r.opts.FetchAtOnce), wait)
		switch {
		case f.ctx.Err() != nil:
			f.giveBackCur()
			queue.GiveBack(fetched)
			return nil
		case errors.Is(err, queue.ErrNoMessage):
			if f.cur != nil && !time.Now().Before(f.cur.lingerEnd) && !f.dispatch() {
				return nil
			}
			continue
		case err != nil:
			f.giveBackCur()
			return fmt.Errorf("sink %q: %w", f.r.opts.Name, err)
		}
		ds := f.r.hold(fetched)
		for i, d := range ds {
			if !f.take(d) {
				f.r.giveBack(ds[i+1:])
				return nil
			}
		}
	}
}

// take admits d into the batch being filled and dispatches the batch when
// it is full; false when the sink stops (d and cur are given back).
func (f *filler) take(d *Delivery) bool {
	if d.bad != nil {
		if !f.r.deadBatch(f.ctx, d) {
			f.giveBackCur()
			return false
		}
		return true
	}
	if a, ok := f.w.(Admitter); ok {
		taken, err := a.Admit(f.ctx, d)
		if err != nil {
			f.r.giveBack([]*Delivery{d})
			f.giveBackCur()
			return false
		}
		if !taken {
			f.r.unhold([]*Delivery{d})
			return true
		}
	}
	if f.cur == nil {
		f.cur = &Batch{lingerEnd: time.Now().Add(f.r.opts.Linger)}
	}
	size := len(d.Data)
	if p, ok := f.w.(Preparer); ok {
		size = p.Prepare(f.cur, d)
	}
	f.cur.add(d)
	f.cur.bytes += size
	o := f.r.opts
	if o.Linger == 0 || o.BatchRecords > 0 && len(f.cur.Records) >= o.BatchRecords || o.BatchBytes > 0 && f.cur.bytes >= o.BatchBytes {
		return f.dispatch()
	}
	return true
}

// dispatch hands the batch being filled to a writer of its own once there
// is room in flight; false when the sink stopped first (it is given back).
func (f *filler) dispatch() bool {
	b := f.cur
	f.cur = nil
	if !f.r.acquire(f.ctx, f.w, b) {
		f.r.giveBack(b.Deliveries)
		return false
	}
	if a, ok := f.w.(Admitter); ok {
		a.Taken(b)
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.r.write(f.wctx, f.w, b)
	}()
	return true
}

func (f *filler) giveBackCur() {
	if f.cur != nil {
		f.r.giveBack(f.cur.Deliveries)
		f.cur = nil
	}
}
