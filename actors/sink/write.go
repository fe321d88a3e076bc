package sink

import (
	"context"
	"sync"
	"time"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// write writes b until each of its records ended, then stores its dead
// records and acks its deliveries; when the sink stops first, the
// deliveries go back to OUT unacked.
func (r *Runner) write(ctx context.Context, w Writer, b *Batch) {
	defer r.release(b)
	bo := backoff.New(r.opts.MinBackoff, r.opts.MaxBackoff)
	// Write is called at least once, also when every record ended before
	// (the writer may hold state for the batch to let go of).
	for n := b.pending(); ; {
		wait := w.Write(ctx, b)
		left := b.pending()
		if left == 0 || ctx.Err() != nil {
			break
		}
		if left < n && wait == 0 {
			n, b.Fails = left, 0 // progress: the rest goes again at once
			bo.Reset()
			continue
		}
		n = left
		b.Fails++
		if wait == 0 {
			wait = bo.Next()
		}
		if !actors.Sleep(ctx, wait) {
			break
		}
	}
	for _, d := range b.Deliveries {
		select {
		case <-d.Done():
		default:
			r.giveBack(b.Deliveries)
			return
		}
	}
	r.finish(ctx, b.Deliveries)
}

// finish stores the dead records of ds in the DLQ, retrying until it can,
// then acks ds.
func (r *Runner) finish(ctx context.Context, ds []*Delivery) {
	var dead []queue.DeadRecord
	for _, d := range ds {
		dead = append(dead, d.deadRecords()...)
	}
	if !r.store(ctx, func() error { return r.q.DeadLetter(ctx, dead) }, len(dead)) {
		r.giveBack(ds)
		return
	}
	r.unhold(ds) // before the acks: keepAlive sends no InProgress after them
	if r.opts.ConfirmAcks {
		r.ackAll(ctx, ds)
	} else {
		for _, d := range ds {
			_ = d.Ack()
		}
	}
	now := time.Now()
	for _, d := range ds {
		if !d.fetched.IsZero() {
			r.M.delivery.Observe(now.Sub(d.fetched).Seconds())
		}
	}
}

// store runs a DLQ store of n records until it succeeds; false when ctx
// ended first.
func (r *Runner) store(ctx context.Context, dlq func() error, n int) bool {
	if n == 0 {
		return true
	}
	bo := backoff.New(r.opts.MinBackoff, r.opts.MaxBackoff)
	for {
		err := dlq()
		if err == nil {
			r.M.dlq.Add(float64(n))
			return true
		}
		wait := bo.Next()
		r.log.Error("dead-lettering failed; retrying", "records", n, "err", err, "next_in", wait)
		if !actors.Sleep(ctx, wait) {
			return false
		}
	}
}

// deadBatch sends every record of d, whose body is not a record batch, to
// the DLQ as one and acks it; false when ctx ended first.
func (r *Runner) deadBatch(ctx context.Context, d *Delivery) bool {
	reason := "not a record batch: " + d.bad.Error()
	if !r.store(ctx, func() error { return r.q.DeadLetterBatch(ctx, queue.StageSink, r.opts.Name, d.Delivery, reason) }, 1) {
		r.giveBack([]*Delivery{d})
		return false
	}
	r.unhold([]*Delivery{d})
	_ = d.Ack()
	return true
}

// ackAll acks a written batch's deliveries and waits until JetStream
// confirms each ack (in a cluster: stored by a quorum). The batch's room
// is not free before that, so a node cut off from the quorum, whose acks
// are never confirmed, has written at most InFlight batches that the
// majority will write again: the duplicate bound of a failover. It stops
// waiting when the node stops or pauses, or after ack_wait, when the
// batch is due again anyway.
func (r *Runner) ackAll(ctx context.Context, ds []*Delivery) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.AckWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				actx, done := context.WithTimeout(ctx, ackConfirmWait)
				err := d.AckSync(actx)
				done()
				if err == nil {
					return
				}
				if !actors.Sleep(ctx, 200*time.Millisecond) {
					r.log.Warn("ack not confirmed (no quorum?); the batch may be delivered again", "batch", d.ID, "err", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// ackConfirmWait bounds one try of an ack's confirmation; a try is repeated
// (acks are idempotent) when a new consumer leader missed it.
const ackConfirmWait = 5 * time.Second

// acquire takes room in flight for b, waiting for it; false when ctx
// ended first. While it waits for bytes, an Admitter frees what it can
// every second.
func (r *Runner) acquire(ctx context.Context, w Writer, b *Batch) bool {
	if r.slots != nil && r.slots.Acquire(ctx, 1) != nil {
		return false
	}
	if r.room == nil {
		return true
	}
	a, _ := w.(Admitter)
	for {
		wait, cancel := context.WithTimeout(ctx, time.Second)
		err := r.room.Acquire(wait, r.weight(b))
		cancel()
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			if r.slots != nil {
				r.slots.Release(1)
			}
			return false
		case a != nil:
			a.Crowded(ctx)
		}
	}
}

func (r *Runner) release(b *Batch) {
	if r.slots != nil {
		r.slots.Release(1)
	}
	if r.room != nil {
		r.room.Release(r.weight(b))
	}
}

// weight is what b takes of InFlightBytes: its bodies' bytes, at most all.
func (r *Runner) weight(b *Batch) int64 {
	var n int64
	for _, d := range b.Deliveries {
		n += int64(len(d.Data))
	}
	return min(n, r.opts.InFlightBytes)
}

// hold wraps fetched deliveries, decoded, and keeps them alive until they
// are acked or given back.
func (r *Runner) hold(fetched []*queue.Delivery) []*Delivery {
	ds := make([]*Delivery, len(fetched))
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	for i, qd := range fetched {
		recs, err := batch.Decode(qd.Data)
		ds[i] = newDelivery(r.opts.Name, qd, recs)
		ds[i].bad = err
		r.held[ds[i]] = struct{}{}
	}
	return ds
}

func (r *Runner) unhold(ds []*Delivery) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	for _, d := range ds {
		delete(r.held, d)
	}
}

// giveBack returns deliveries to OUT for delivery now: to this node
// after a restart, or to another node.
func (r *Runner) giveBack(ds []*Delivery) {
	r.unhold(ds)
	for _, d := range ds {
		_ = d.Nak(0)
	}
}

// keepAlive tells JetStream, every third of ack_wait, that each delivery
// the sink holds is being worked on — fetched and waiting for room,
// lingering in a batch, or being written (a write can outlast ack_wait:
// a destination that is down, rows that wait for a widened schema) — so
// that it is not handed out again meanwhile (copies, and deliveries
// counted towards MaxDeliveries). stop returns once it has ended.
func (r *Runner) keepAlive() (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(r.opts.AckWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-done:
				return
			}
			// Under the lock: a delivery acked or given back meanwhile
			// (unhold first) gets no InProgress after it.
			r.heldMu.Lock()
			for d := range r.held {
				_ = d.InProgress()
			}
			r.heldMu.Unlock()
		}
	}()
	return func() { close(done); <-ended }
}

// oldestHeldSeconds is the age of the oldest record the sink holds and
// has not delivered (since its fetch at the source); 0 when none.
func (r *Runner) oldestHeldSeconds() float64 {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	var oldest time.Time
	for d := range r.held {
		if !d.fetched.IsZero() && (oldest.IsZero() || d.fetched.Before(oldest)) {
			oldest = d.fetched
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest).Seconds()
}
