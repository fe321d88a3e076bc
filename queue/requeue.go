package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/queue/batch"
)

// requeuePrefix starts the message ID of a requeued copy:
// requeue/<count>/<batch ID>.
const requeuePrefix = "requeue/"

// Requeue gives a batch back without counting a delivery against it: it
// stores a copy at the end of the batch's subject, then acks the original.
// A Nak would count towards MaxDeliveries, which is right for a batch a
// stage crashed on and wrong for one that waits on its destination (a
// table that keeps failing must not turn its rows into dead letters). The
// copy's message ID is derived from the original's, so a Requeue repeated
// after a crash between the store and the ack stores it once. On error
// (ErrBufferFull: the stream has no room for the copy) nothing changed.
func (d *Delivery) Requeue(ctx context.Context) error {
	if err := d.store(ctx, d.BatchID(), d.Data, d.Meta().Count); err != nil {
		return err
	}
	if err := d.Ack(); err != nil {
		// The copy is stored; the original comes back after AckWait and
		// its Requeue stores nothing new (same message ID).
		return fmt.Errorf("queue: requeue %s: ack the original: %w", d.BatchID(), err)
	}
	return nil
}

// RequeueRecords stores some of a delivery's records again, as a batch of
// their own at the end of its subject, and leaves the delivery to the
// caller, who acks it once the rest of it is done: a stage that can go on
// with most of a batch sets aside the records that must wait. part names
// the set (e.g. the tables they go to, without "/"); the copy's batch ID
// is part/<batch ID>, so its record IDs are its own, and a repeat after a
// crash stores it once.
func (d *Delivery) RequeueRecords(ctx context.Context, recs [][]byte, part string) error {
	return d.store(ctx, part+"/"+d.BatchID(), batch.Encode(recs), len(recs))
}

// store publishes a requeued copy of d with body data under the batch ID
// id; its message ID is requeue/<count>/<id>.
func (d *Delivery) store(ctx context.Context, id string, data []byte, records int) error {
	if d.c == nil {
		return fmt.Errorf("queue: requeue %s: not a consumer's delivery", d.ID)
	}
	m := d.Meta()
	m.Requeued++
	m.Count = records
	b := &batch.Batch{Subject: d.Subject, ID: requeuePrefix + strconv.Itoa(m.Requeued) + "/" + id, Meta: m, Body: data}
	if err := d.c.q.Publish(ctx, []*batch.Batch{b}); err != nil {
		return fmt.Errorf("queue: requeue %s: %w", id, err)
	}
	d.c.q.metrics.requeued.WithLabelValues(d.c.cfg.Stream, d.c.cfg.Durable).Inc()
	return nil
}

// BatchID is the ID of the batch a delivery carries, the same for a
// requeued copy as for the original (record IDs and the DLQ use it); a
// part set aside by RequeueRecords has its own, part/<batch ID>.
func (d *Delivery) BatchID() string {
	if d.Meta().Requeued == 0 {
		return d.ID
	}
	rest, ok := strings.CutPrefix(d.ID, requeuePrefix)
	if !ok {
		return d.ID
	}
	if _, id, ok := strings.Cut(rest, "/"); ok {
		return id
	}
	return d.ID
}
