package sink

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// fakeWriter ends each record as its data says: "dead…" to the DLQ,
// "retry…" left the first time it is seen (accepted after), "hold…" left
// while hold is set; anything else accepted. It counts what it saw.
type fakeWriter struct {
	mu       sync.Mutex
	seen     map[string]int // record ID → writes
	accepted map[string]int
	times    map[string][]time.Time // record ID → when written
	hold     atomic.Bool
	wait     time.Duration // returned with records left
	block    chan struct{} // when set, Write waits on it first
	active   atomic.Int32
	maxAct   atomic.Int32
	redeliv  atomic.Int32 // deliveries handed out more than once
}

func newFakeWriter() *fakeWriter {
	return &fakeWriter{seen: map[string]int{}, accepted: map[string]int{}, times: map[string][]time.Time{}}
}

func (w *fakeWriter) Write(ctx context.Context, b *Batch) time.Duration {
	n := w.active.Add(1)
	defer w.active.Add(-1)
	for m := w.maxAct.Load(); n > m && !w.maxAct.CompareAndSwap(m, n); m = w.maxAct.Load() {
	}
	if w.block != nil {
		select {
		case <-w.block:
		case <-ctx.Done():
			return 0
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range b.Deliveries {
		if d.Delivered > 1 {
			w.redeliv.Add(1)
		}
	}
	for _, r := range b.Records {
		data := string(r.Data())
		w.seen[r.ID()]++
		w.times[r.ID()] = append(w.times[r.ID()], time.Now())
		switch {
		case strings.HasPrefix(data, "dead"):
			r.DeadLetter("refused: " + data)
		case strings.HasPrefix(data, "retry") && w.seen[r.ID()] == 1:
		case strings.HasPrefix(data, "hold") && w.hold.Load():
		default:
			w.accepted[r.ID()]++
			r.Accept()
		}
	}
	return w.wait
}

func (w *fakeWriter) count(m map[string]int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(m)
}

type fixture struct {
	t *testing.T
	q *queue.Queue
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return &fixture{t: t, q: q}
}

// publish stores one OUT batch per element of batches, holding its records.
func (f *fixture) publish(batches ...[]string) {
	f.t.Helper()
	var msgs []*nats.Msg
	for i, recs := range batches {
		var rs [][]byte
		for _, r := range recs {
			rs = append(rs, []byte(r))
		}
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprintf("b%d-%d", i, time.Now().UnixNano()))
		h.Set(batch.HeaderCount, fmt.Sprint(len(rs)))
		h.Set(batch.HeaderFetchedAt, fmt.Sprint(time.Now().UnixNano()))
		msgs = append(msgs, &nats.Msg{Subject: queue.OutSubject("t"), Header: h, Data: batch.Encode(rs)})
	}
	if err := f.q.PublishMessages(context.Background(), msgs); err != nil {
		f.t.Fatal(err)
	}
}

// run runs a runner with o (Name "t") until the test ends or stop is called.
func (f *fixture) run(o Options, w Writer) (r *Runner, stop func()) {
	f.t.Helper()
	o.Name = "t"
	if o.AckWait == 0 {
		o.AckWait = 5 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
	}
	r, err := New(o, Deps{Queue: f.q})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, w) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("Run: %v", err)
			}
		})
	}
	f.t.Cleanup(stop)
	return r, stop
}

func (f *fixture) acked() uint64 {
	n, _ := f.q.AckFloor(context.Background(), queue.StreamOut, "sink-t")
	return n
}

func (f *fixture) dead() map[string]string {
	out := map[string]string{}
	_ = f.q.Scan(context.Background(), queue.ScanOptions{Stream: queue.StreamDLQ}, func(s queue.Stored) (bool, error) {
		out[s.Header.Get(batch.HeaderRecordID)] = s.Header.Get(batch.HeaderReason)
		return true, nil
	})
	return out
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
