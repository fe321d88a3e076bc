package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sluicehq/sluice/queue/batch"
)

// A stage that gives a batch back because of where it goes, not because
// of the batch, stores it again at the end of its subject: the copy starts
// with one delivery, so waiting never turns into a dead letter, the
// original is acked, and the copy keeps the batch's ID for its records.
func TestRequeueStartsTheDeliveryCountAgain(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	msg := rawMsg("a", "id-1", "r1", "r2")
	msg.Header.Set(batch.HeaderSource, "a")
	if err := q.PublishMessages(ctx, []*nats.Msg{msg}); err != nil {
		t.Fatal(err)
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>",
		AckWait: time.Minute, MaxDeliveries: 2, Stage: "transform", Name: "transform"})
	if err != nil {
		t.Fatal(err)
	}
	var d *Delivery
	for i := 0; i < 2; i++ { // its last delivery
		if d, err = c.Next(ctx, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			_ = d.Nak(0)
		}
	}
	if d.Delivered != 2 {
		t.Fatalf("delivered %d, want 2", d.Delivered)
	}
	if err := d.Requeue(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := c.Next(ctx, 5*time.Second)
	if err != nil {
		t.Fatalf("the requeued batch: %v", err)
	}
	if again.Delivered != 1 || again.Seq <= d.Seq || again.Meta().Source != "a" || string(again.Data) != string(d.Data) {
		t.Fatalf("requeued: delivered %d, seq %d (original %d), source %q", again.Delivered, again.Seq, d.Seq, again.Meta().Source)
	}
	if again.BatchID() != "id-1" || again.Meta().Requeued != 1 {
		t.Fatalf("requeued: batch %q, requeued %d", again.BatchID(), again.Meta().Requeued)
	}
	_ = again.Ack()
	if _, err := c.Next(ctx, 500*time.Millisecond); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("after the copy's ack: %v, want nothing (the original acked, one copy)", err)
	}
	if n := streamMsgs(t, q, StreamDLQ); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// Records set aside from a batch come back as a batch of their own, with
// their own batch ID (record IDs must not collide with the original's);
// the original waits for its ack.
func TestRequeueRecordsSetsAsideABatchOfTheirOwn(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", "id-1", "r0", "r1", "r2")}); err != nil {
		t.Fatal(err)
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>", AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Next(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.RequeueRecords(ctx, [][]byte{[]byte("r1")}, "tables=t.down"); err != nil {
		t.Fatal(err)
	}
	_ = d.Ack()
	part, err := c.Next(ctx, 5*time.Second)
	if err != nil {
		t.Fatalf("the part set aside: %v", err)
	}
	recs, err := batch.Decode(part.Data)
	if err != nil || len(recs) != 1 || string(recs[0]) != "r1" || part.Meta().Count != 1 {
		t.Fatalf("part: %q (count %d), %v", recs, part.Meta().Count, err)
	}
	if part.BatchID() != "tables=t.down/id-1" || part.Delivered != 1 {
		t.Fatalf("part: batch %q, delivered %d", part.BatchID(), part.Delivered)
	}
}
