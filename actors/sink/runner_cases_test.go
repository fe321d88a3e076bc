package sink

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// Each record ends as the writer says: accepted, dead-lettered with its
// reason (one DLQ message each, stored before the ack), or written again
// — after a backoff when a write ended none of its records. Every batch
// is acked once, after all of its records ended.
func TestEachRecordEndsAsItsWriterSaysThenTheBatchIsAcked(t *testing.T) {
	f := newFixture(t)
	f.publish([]string{"a", "dead one", "retry one"}, []string{"b", "c"}, []string{"dead two"}, []string{"retry two"})
	w := newFakeWriter()
	f.run(Options{FetchAtOnce: 8}, w)
	var dead map[string]string
	waitFor(t, 10*time.Second, "every batch acked", func() bool {
		if f.acked() < 4 {
			return false
		}
		dead = f.dead() // stored before the ack: there now
		return true
	})
	if len(dead) != 2 {
		t.Fatalf("DLQ: %v, want the two dead records", dead)
	}
	for id, reason := range dead {
		if !strings.HasPrefix(reason, "refused: dead") || !strings.HasSuffix(id, "/1") && !strings.HasSuffix(id, "/0") {
			t.Fatalf("DLQ record %s: reason %q", id, reason)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.accepted) != 5 {
		t.Fatalf("accepted %d records, want 5: %v", len(w.accepted), w.accepted)
	}
	for id, n := range w.accepted {
		if n != 1 {
			t.Fatalf("record %s accepted %d times", id, n)
		}
	}
	for id, ts := range w.times {
		switch {
		case strings.HasSuffix(id, "/2") && len(ts) != 2: // "retry one": its batch made progress, again at once
			t.Fatalf("record %s written %d times, want 2", id, len(ts))
		case len(ts) == 2 && strings.HasPrefix(id, "b3") && ts[1].Sub(ts[0]) < 25*time.Millisecond:
			t.Fatalf("record %s written again after %s, want a backoff of at least 25ms", id, ts[1].Sub(ts[0]))
		}
	}
}

// The batches being written are bounded by InFlight, and by
// InFlightBytes; nothing is acked while its write has not ended.
func TestInFlightBoundsBatchesAndBytes(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		want int32
	}{
		{"batches", Options{InFlight: 2}, 2},
		{"bytes", Options{InFlightBytes: 2500}, 2}, // three batches of ~1 KB do not fit
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			rec := strings.Repeat("x", 1000)
			var bs [][]string
			for i := 0; i < 6; i++ {
				bs = append(bs, []string{rec})
			}
			f.publish(bs...)
			w := newFakeWriter()
			w.block = make(chan struct{})
			c.o.FetchAtOnce = 8
			f.run(c.o, w)
			waitFor(t, 5*time.Second, "writes under way", func() bool { return w.active.Load() == c.want })
			time.Sleep(300 * time.Millisecond)
			if m := w.maxAct.Load(); m != c.want {
				t.Fatalf("%d writes at once, want %d", m, c.want)
			}
			if n := f.acked(); n != 0 {
				t.Fatalf("%d batches acked while their writes had not ended", n)
			}
			close(w.block)
			waitFor(t, 5*time.Second, "every batch acked", func() bool { return f.acked() == 6 })
			if m := w.maxAct.Load(); m != c.want {
				t.Fatalf("%d writes at once, want %d", m, c.want)
			}
		})
	}
}

// Batches held longer than ack_wait — being written, or fetched and
// waiting for room — are kept alive: none is delivered again, and each is
// acked once the destination takes it.
func TestHeldBatchesAreKeptAlive(t *testing.T) {
	f := newFixture(t)
	f.publish([]string{"hold a"}, []string{"hold b"}, []string{"hold c"})
	w := newFakeWriter()
	w.hold.Store(true)
	w.wait = 100 * time.Millisecond
	f.run(Options{AckWait: time.Second, InFlight: 1, FetchAtOnce: 8}, w)
	time.Sleep(3500 * time.Millisecond)
	if n := w.redeliv.Load(); n != 0 {
		t.Fatalf("%d batches delivered again while held", n)
	}
	w.hold.Store(false)
	waitFor(t, 5*time.Second, "every batch acked", func() bool { return f.acked() == 3 })
	infos, err := f.q.ConsumerInfos(context.Background(), queue.StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range infos {
		if ci.NumRedelivered != 0 || ci.Delivered.Consumer != 3 {
			t.Fatalf("consumer %s: %d redelivered, %d deliveries; want 0 and 3", ci.Name, ci.NumRedelivered, ci.Delivered.Consumer)
		}
	}
	if n := w.redeliv.Load(); n != 0 {
		t.Fatalf("%d batches delivered again", n)
	}
}

// A runner that stops gives what it holds back to OUT at once (not after
// ack_wait), unacked: the next runner writes it.
func TestStopGivesHeldBatchesBack(t *testing.T) {
	f := newFixture(t)
	f.publish([]string{"hold a"})
	w := newFakeWriter()
	w.hold.Store(true)
	_, stop := f.run(Options{AckWait: 30 * time.Second}, w)
	waitFor(t, 5*time.Second, "a write", func() bool { return w.count(w.seen) == 1 })
	stop()
	if n := f.acked(); n != 0 {
		t.Fatalf("%d batches acked", n)
	}
	w2 := newFakeWriter()
	f.run(Options{AckWait: 30 * time.Second}, w2)
	waitFor(t, 5*time.Second, "the batch written by the next runner and acked", func() bool { return f.acked() == 1 })
	if n := w2.redeliv.Load(); n != 1 {
		t.Fatalf("the next runner saw %d redeliveries, want 1", n)
	}
}

// A body that is not a record batch goes to the DLQ whole, with why, and
// is acked; the writer never sees it.
func TestNotARecordBatchIsDeadLettered(t *testing.T) {
	f := newFixture(t)
	h := nats.Header{}
	h.Set(batch.HeaderMsgID, "junk")
	if err := f.q.PublishMessages(context.Background(), []*nats.Msg{{Subject: queue.OutSubject("t"), Header: h, Data: []byte("not a batch")}}); err != nil {
		t.Fatal(err)
	}
	w := newFakeWriter()
	f.run(Options{}, w)
	waitFor(t, 5*time.Second, "acked", func() bool { return f.acked() == 1 })
	dead := f.dead()
	if len(dead) != 1 || !strings.HasPrefix(dead["junk/corrupt"], "not a record batch: ") {
		t.Fatalf("DLQ: %v", dead)
	}
	if n := w.count(w.seen); n != 0 {
		t.Fatalf("the writer saw %d records", n)
	}
}
