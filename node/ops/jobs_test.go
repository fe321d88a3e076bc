package ops_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// bare is a queue and an ops manager without actors: the test plays every
// stage itself.
type bare struct {
	t    *testing.T
	q    *queue.Queue
	m    *ops.Manager
	reg  *prometheus.Registry
	dir  string
	log  *syncBuffer
	stop func()
}

// syncBuffer is a log the node writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startBare(t *testing.T, dir string, sinks ...string) *bare {
	t.Helper()
	return startBareSized(t, dir, 256<<20, sinks...)
}

// startBareSized is startBare with queue.max_bytes maxBytes.
func startBareSized(t *testing.T, dir string, maxBytes int64, sinks ...string) *bare {
	t.Helper()
	q, err := queue.Start(context.Background(), queue.Options{DataDir: dir, ServerName: "test", MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var cs []ops.Component
	for _, s := range sinks {
		cs = append(cs, ops.Component{Name: s, Type: "splunk_hec"})
	}
	reg := prometheus.NewRegistry()
	log := &syncBuffer{}
	m, err := ops.New(ctx, ops.Deps{Node: "test", Queue: q, Registry: reg, Sinks: cs, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	b := &bare{t: t, q: q, m: m, reg: reg, dir: dir, log: log}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			m.Wait()
			q.Close()
		}
	}
	t.Cleanup(stop)
	b.stop = stop
	return b
}

// publishOut stores n OUT batches of one record of size bytes for sink,
// with IDs prefix-0 … prefix-(n-1).
func (b *bare) publishOut(sink, prefix string, n, size int) {
	b.t.Helper()
	pad := strings.Repeat("x", size)
	var msgs []*nats.Msg
	for i := 0; i < n; i++ {
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprintf("%s-%d/%s", prefix, i, sink))
		h.Set(batch.HeaderSink, sink)
		h.Set(batch.HeaderCount, "1")
		msgs = append(msgs, &nats.Msg{Subject: queue.OutSubject(sink), Header: h,
			Data: batch.Encode([][]byte{fmt.Appendf(nil, `{"id":"%s-%d","timestamp":1,"data":{"pad":%q}}`, prefix, i, pad)})})
		if len(msgs) == 32 || i == n-1 {
			if err := b.q.PublishMessages(context.Background(), msgs); err != nil {
				b.t.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
}

// deliver acks n messages as sink-<sink>, the way its sink would.
func (b *bare) deliver(sink string, n int) {
	b.t.Helper()
	ctx := context.Background()
	c, err := b.q.Consumer(ctx, queue.ConsumerConfig{Stream: queue.StreamOut, Durable: "sink-" + sink, Subject: queue.OutSubject(sink), MaxAckPending: 1000})
	if err != nil {
		b.t.Fatal(err)
	}
	for got := 0; got < n; {
		ds, err := c.Fetch(ctx, n-got, 5*time.Second)
		if err != nil {
			b.t.Fatal(err)
		}
		for _, d := range ds {
			if err := d.Ack(); err != nil {
				b.t.Fatal(err)
			}
			got++
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Info(ctx)
		if err == nil && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("sink-%s: acks not all in after 10s: %+v, %v", sink, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bare) waitJob(id string) ops.JobStatus {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := b.m.Job(id)
		if err != nil {
			b.t.Fatal(err)
		}
		if st := j.Status(); st.State != ops.JobRunning {
			return st
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("job %s still running after 30s: %+v", id, j.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 35 case 4: records of the window that go while a replay runs (a
// node without holds trimmed them, an operator purged them) make the job
// end partial, saying how much of the plan was not sent — never done.
func TestReplayEndsPartialWhenRecordsGoWhileItRuns(t *testing.T) {
	b := startBare(t, t.TempDir(), "splunk")
	ctx := context.Background()
	from := time.Now()
	const n = 500 // 64 KB each: twice what one pull of the replay's reader takes
	b.publishOut("splunk", "orig", n, 64<<10)
	b.deliver("splunk", n)
	to := time.Now()
	plan, j, err := b.m.Replay(ctx, ops.ReplayRequest{Sink: "splunk", From: from, To: to, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Records != n {
		t.Fatalf("plan %+v, want %d records", plan, n)
	}
	time.Sleep(50 * time.Millisecond)
	// Every original goes; the copies the job made (later sequences) stay.
	s, err := b.q.JetStream().Stream(ctx, queue.StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(queue.OutSubject("splunk")), jetstream.WithPurgeSequence(plan.UpToSeq+1)); err != nil {
		t.Fatal(err)
	}
	st := b.waitJob(j.ID)
	if st.State == ops.JobDone {
		t.Fatalf("replay ended done after sending %d of the %d records it planned", st.Done.Records, st.Total.Records)
	}
	if st.State != ops.JobPartial || st.Done.Records >= n || !strings.Contains(st.Error, fmt.Sprintf("of %d planned records", n)) {
		t.Fatalf("replay ended %s, %d of %d sent: %q; want partial, naming what was not sent", st.State, st.Done.Records, n, st.Error)
	}
}

// Issue 35 case 6: a job cut off by a restart says so after it: status
// shows it lost, with what it had sent.
func TestJobCutOffByARestartShowsAsLostAfterIt(t *testing.T) {
	dir := t.TempDir()
	b := startBare(t, dir, "splunk")
	from := time.Now()
	b.publishOut("splunk", "orig", 100, 100)
	b.deliver("splunk", 100)
	_, j, err := b.m.Replay(context.Background(), ops.ReplayRequest{Sink: "splunk", From: from, To: time.Now(), Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for j.Status().Done.Records == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the replay sent nothing in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.stop()
	sent := j.Status().Done.Records

	b = startBare(t, dir, "splunk")
	st := b.m.Status(context.Background())
	var found *ops.JobStatus
	for i, js := range st.Jobs {
		if js.ID == j.ID {
			found = &st.Jobs[i]
		}
	}
	if found == nil {
		t.Fatalf("after the restart status shows no trace of job %s (jobs: %+v)", j.ID, st.Jobs)
	}
	if found.State != "lost" || found.Done.Records != sent || found.Total.Records != 100 || !strings.Contains(found.Error, fmt.Sprintf("sent %d of 100 records", sent)) {
		t.Fatalf("job after the restart: %+v; want lost, having sent %d of 100", *found, sent)
	}

	// A crash leaves the job saved as running: the next start says lost.
	kv, err := b.q.JetStream().KeyValue(context.Background(), "sluice_jobs")
	if err != nil {
		t.Fatal(err)
	}
	crashed := `{"node":"test","id":"replay-crashed","kind":"replay","state":"running","request":{},"total":{"records":10,"bytes":1000},"done":{"records":4,"bytes":400},"started":"2026-12-07T10:00:00Z"}`
	if _, err := kv.Put(context.Background(), "replay-crashed", []byte(crashed)); err != nil {
		t.Fatal(err)
	}
	b.stop()
	b = startBare(t, dir, "splunk")
	for _, js := range b.m.Jobs() {
		if js.ID == "replay-crashed" {
			if js.State != "lost" || !strings.Contains(js.Error, "sent 4 of 10 records by its last save") {
				t.Fatalf("a job saved as running, after the restart: %+v; want lost, having sent 4 of 10", js)
			}
			return
		}
	}
	t.Fatalf("the crashed job is not among %+v", b.m.Jobs())
}
