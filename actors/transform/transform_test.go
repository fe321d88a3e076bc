package transform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
	"github.com/sluicehq/sluice/rego"
)

const policy = `package schema.t

log contains {"timestamp": 1, "data": input, "sink": "a"} if input.to_a
log contains {"timestamp": 2, "data": input, "sink": "b"} if input.to_b
log contains {"timestamp": 3, "data": input, "sink": "nowhere"} if input.bad_sink
log contains {"timestamp": 4, "data": {"n": n}, "sink": "a"} if {
	input.loop
	n := count([x | some x in numbers.range(1, 100000000); x % 7 == 3])
}
log contains {"timestamp": 5, "data": {"k": input.k, "n": n}, "sink": "a"} if {
	input.spin
	n := count([x | some x in numbers.range(1, input.spin); x % 7 == 3])
}
`

type fixture struct {
	t    *testing.T
	q    *queue.Queue
	qreg *prometheus.Registry // the queue's metrics
	reg  *prometheus.Registry // the transform's
}

func newFixture(t *testing.T) *fixture {
	qreg := prometheus.NewRegistry()
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxBytes: 128 << 20, Metrics: qreg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return &fixture{t: t, q: q, qreg: qreg, reg: prometheus.NewRegistry()}
}

func (f *fixture) run() func() {
	_, stop := f.runWith(Config{}, rego.Options{EvalTimeout: 50 * time.Millisecond})
	return stop
}

// runWith starts the transform with cfg and an engine of policy made with
// opts; the engine's directory is policyDir.
func (f *fixture) runWith(cfg Config, opts rego.Options) (*rego.Engine, func()) {
	eng := loadPolicy(f.t, policy, opts)
	f.reg = prometheus.NewRegistry()
	tr, err := New(cfg, Deps{Queue: f.q, Engine: eng, Metrics: f.reg, Sinks: map[string]string{"a": "test", "b": "test"}})
	if err != nil {
		f.t.Fatal(err)
	}
	rt, _ := actors.NewRuntime(nil2(), prometheus.NewRegistry())
	rt.Add(actors.StageTransform, "transform", tr)
	rt.Start(context.Background())
	return eng, func() { _ = rt.Stop(10 * time.Second) }
}

// loadPolicy writes text as the policy t.rego of a new directory, with
// the event policy beside it, and loads them.
func loadPolicy(t *testing.T, text string, opts rego.Options) *rego.Engine {
	t.Helper()
	dir := t.TempDir()
	for name, text := range map[string]string{"t.rego": text, "event.rego": eventPolicy} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eng, err := rego.Load(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// eventPolicy sends every source event to schema t, slowly for an event
// with a large "spin".
const eventPolicy = `package event

src contains {"schema": "t"} if {
	count([x | some x in numbers.range(1, object.get(input, "spin", 1)); x % 7 == 3]) >= 0
}
`

// spinFor is the input.spin that makes the policy take about d on a
// record, measured on this machine as it is loaded now.
func spinFor(t *testing.T, d time.Duration) int {
	t.Helper()
	eng := loadPolicy(t, policy, rego.Options{EvalTimeout: time.Minute})
	const probe = 5000
	var best time.Duration
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := eng.Outputs(context.Background(), "t", []byte(fmt.Sprintf(`{"k":0,"spin":%d}`, probe))); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); best == 0 || took < best {
			best = took
		}
	}
	return int(float64(probe) * float64(d) / float64(best))
}

func (f *fixture) publishRaw(id string, records ...string) {
	recs := make([][]byte, len(records))
	for i, r := range records {
		recs[i] = []byte(r)
	}
	h := nats.Header{}
	h.Set(batch.HeaderMsgID, id)
	h.Set(batch.HeaderSchema, "t")
	h.Set(batch.HeaderCount, fmt.Sprint(len(recs)))
	if err := f.q.PublishMessages(context.Background(), []*nats.Msg{{Subject: queue.RawSubject("src"), Header: h, Data: batch.Encode(recs)}}); err != nil {
		f.t.Fatal(err)
	}
}

// read drains a subject through a fresh durable consumer.
func (f *fixture) read(stream, subject string) []*queue.Delivery {
	c, err := f.q.Consumer(context.Background(), queue.ConsumerConfig{Stream: stream, Durable: "check-" + strings.NewReplacer(".", "-", ">", "all").Replace(subject), Subject: subject})
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	var out []*queue.Delivery
	for {
		d, err := c.Next(context.Background(), 300*time.Millisecond)
		if err != nil {
			return out
		}
		out = append(out, d)
	}
}

func (f *fixture) waitIdle() {
	deadline := time.Now().Add(15 * time.Second)
	ctx := context.Background()
	for {
		// Done when the transform consumer exists and has acked all of RAW.
		s, _ := f.q.JetStream().Stream(ctx, queue.StreamRaw)
		c, err := f.q.JetStream().Consumer(ctx, queue.StreamRaw, "transform")
		if err == nil && s != nil {
			ci, err1 := c.Info(ctx)
			si, err2 := s.Info(ctx)
			if err1 == nil && err2 == nil && ci.AckFloor.Stream == si.State.LastSeq {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatal("transform did not drain RAW")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwoSinkOutputsLandOnceEvenWhenRAWComesTwice(t *testing.T) {
	f := newFixture(t)
	f.publishRaw("raw-1", `{"to_a":true,"to_b":true,"k":1}`, `{"to_a":true,"k":2}`, `{"k":3}`)
	stop := f.run()
	f.waitIdle()
	stop()
	dropped := testutil.ToFloat64(mustVec(t, f.reg, "sluice_transform_dropped_total"))
	// Deliver the RAW batch again: a new consumer under the same durable name.
	js := f.q.JetStream()
	if err := js.DeleteConsumer(context.Background(), queue.StreamRaw, "transform"); err != nil {
		t.Fatal(err)
	}
	stop = f.run()
	f.waitIdle()
	stop()
	a, b := f.read(queue.StreamOut, "out.a"), f.read(queue.StreamOut, "out.b")
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("out.a has %d batches, out.b %d; want 1 each", len(a), len(b))
	}
	if a[0].ID != "raw-1/a" || a[0].Meta().RawID != "raw-1" || a[0].Meta().Count != 2 || a[0].Meta().Encoded != batch.EncodedDataLast {
		t.Fatalf("out.a meta: %+v", a[0].Meta())
	}
	recs, _ := batch.Decode(a[0].Data)
	var o batch.Output
	_ = json.Unmarshal(recs[1], &o)
	if o.Timestamp != 1 || string(o.Data) != `{"k":2,"to_a":true}` {
		t.Fatalf("out.a record 1: %s", recs[1])
	}
	if dropped != 1 {
		t.Fatalf("dropped by policy = %v, want 1", dropped)
	}
}

func TestLoopingRecordGoesToDLQAndTheRestFlow(t *testing.T) {
	f := newFixture(t)
	f.publishRaw("raw-1", `{"to_a":true,"k":1}`, `{"loop":true}`, `{"bad_sink":true}`, `{"to_b":true,"k":4}`)
	f.publishRaw("raw-2", `{"to_a":true,"k":5}`)
	stop := f.run()
	f.waitIdle()
	stop()
	if a, b := f.read(queue.StreamOut, "out.a"), f.read(queue.StreamOut, "out.b"); len(a) != 2 || len(b) != 1 {
		t.Fatalf("out.a %d batches, out.b %d", len(a), len(b))
	}
	dlq := f.read(queue.StreamDLQ, "dlq.>")
	if len(dlq) != 2 {
		t.Fatalf("DLQ holds %d records, want 2", len(dlq))
	}
	reasons := map[string]string{}
	for _, d := range dlq {
		reasons[d.Meta().RecordID] = d.Meta().Reason
	}
	if !strings.Contains(reasons["raw-1/1"], "exceeded the time limit") {
		t.Errorf("looping record: %q", reasons["raw-1/1"])
	}
	if !strings.Contains(reasons["raw-1/2"], `no sink named "nowhere"`) {
		t.Errorf("bad sink record: %q", reasons["raw-1/2"])
	}
}

func mustVec(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	fams, _ := reg.Gather()
	total := 0.0
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c.Add(total)
	return c
}

// OUT full for many times AckWait: the transform holds its RAW batch and
// retries; nothing is dead-lettered or published twice.
func TestFullOUTPausesWithoutDeadLettering(t *testing.T) {
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxBytes: 4 << 20}) // OUT: 60% of 4 MiB
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	f := &fixture{t: t, q: q}
	big := strings.Repeat("x", 20<<10)
	// Another sink's undelivered backlog fills OUT almost to the limit.
	for i := 0; i < 110; i++ {
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprint("filler-", i))
		if err := q.PublishMessages(context.Background(), []*nats.Msg{{Subject: queue.OutSubject("b"), Header: h, Data: batch.Encode([][]byte{[]byte(big)})}}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 40
	for i := 0; i < n; i++ {
		f.publishRaw(fmt.Sprint("raw-", i), fmt.Sprintf(`{"to_a":true,"i":%d,"pad":%q}`, i, big))
	}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "t.rego"), []byte(policy), 0o644)
	eng, _ := rego.Load(dir, rego.Options{})
	tr, _ := New(Config{AckWait: conf.Duration(time.Second), MaxDeliveries: 2}, Deps{Queue: q, Engine: eng, Metrics: prometheus.NewRegistry(), Sinks: map[string]string{"a": "test", "b": "test"}})
	rt, _ := actors.NewRuntime(nil2(), prometheus.NewRegistry())
	rt.Add(actors.StageTransform, "transform", tr)
	rt.Start(context.Background())
	defer rt.Stop(10 * time.Second)
	waitUntil(t, func() bool { err := rt.Ready(); return err != nil && strings.Contains(err.Error(), "OUT is full") })
	time.Sleep(5 * time.Second) // > MaxDeliveries × AckWait
	// The other sink catches up: its backlog goes, and with it the pressure.
	s, _ := q.JetStream().Stream(context.Background(), queue.StreamOut)
	if err := s.Purge(context.Background(), jetstream.WithPurgeSubject("out.b")); err != nil {
		t.Fatal(err)
	}
	c, err := q.Consumer(context.Background(), queue.ConsumerConfig{Stream: queue.StreamOut, Durable: "sink-a", Subject: "out.a"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		d, err := c.Next(context.Background(), 200*time.Millisecond)
		if err != nil {
			_ = q.Trim(context.Background())
			continue
		}
		seen[d.ID]++
		_ = d.Ack()
	}
	if len(seen) != n {
		t.Fatalf("%d of %d outputs reached OUT", len(seen), n)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s delivered %d times", id, n)
		}
	}
	if dlq := f.read(queue.StreamDLQ, "dlq.>"); len(dlq) != 0 {
		t.Fatalf("%d records dead-lettered while OUT was full: %s", len(dlq), dlq[0].Meta().Reason)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// OUT has room for one sink's output of a RAW batch and not the other's:
// the retry once there is room stores only the one that failed. Past the
// duplicate window, sending the stored one again would store it twice.
func TestRetryAfterFullOUTPublishesOnlyWhatFailed(t *testing.T) {
	ctx := context.Background()
	q, err := queue.Start(ctx, queue.Options{DataDir: t.TempDir(), MaxBytes: 4 << 20, DuplicateWindow: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	f := &fixture{t: t, q: q}
	// Fill OUT with another sink's backlog, then free one filler: 20 to
	// 40 KB are left, room for a small output but not a 60 KB one.
	filler := batch.Encode([][]byte{[]byte(strings.Repeat("x", 20<<10))})
	var last uint64
	for i := 0; ; i++ {
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprint("filler-", i))
		err := q.PublishMessages(ctx, []*nats.Msg{{Subject: queue.OutSubject("c"), Header: h, Data: filler}})
		if errors.Is(err, queue.ErrBufferFull) {
			break
		}
		if err != nil || i > 1000 {
			t.Fatalf("filling OUT: %v (%d fillers)", err, i)
		}
		last++
	}
	s, err := q.JetStream().Stream(ctx, queue.StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, last); err != nil {
		t.Fatal(err)
	}
	f.publishRaw("raw-1", `{"to_a":true,"k":1}`, fmt.Sprintf(`{"to_b":true,"pad":%q}`, strings.Repeat("y", 60<<10)))

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "t.rego"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := rego.Load(dir, rego.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config{}, Deps{Queue: q, Engine: eng, Metrics: prometheus.NewRegistry(), Sinks: map[string]string{"a": "test", "b": "test", "c": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := actors.NewRuntime(nil2(), prometheus.NewRegistry())
	rt.Add(actors.StageTransform, "transform", tr)
	rt.Start(ctx)
	defer rt.Stop(10 * time.Second)
	waitUntil(t, func() bool { err := rt.Ready(); return err != nil && strings.Contains(err.Error(), "OUT is full") })
	time.Sleep(time.Second) // out.a's batch is stored; its ID leaves the duplicate window
	if err := s.Purge(ctx, jetstream.WithPurgeSubject("out.c")); err != nil {
		t.Fatal(err)
	}
	f.waitIdle()
	a, b := f.read(queue.StreamOut, "out.a"), f.read(queue.StreamOut, "out.b")
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("out.a holds %d batches, out.b %d; want 1 each (a stored output was published again)", len(a), len(b))
	}
}

// A batch whose evaluation takes twice AckWait is worked on once: the
// transform keeps its lease while it evaluates, so JetStream neither sends
// it again (to another worker, which would do the work twice) nor counts
// deliveries towards MaxDeliveries.
func TestSlowBatchKeepsItsLease(t *testing.T) {
	f := newFixture(t)
	spin := spinFor(t, 250*time.Millisecond)
	t.Logf("spin %d", spin)
	const n = 8 // about 2 s of evaluation
	recs := make([]string, n)
	for i := range recs {
		recs[i] = fmt.Sprintf(`{"k":%d,"spin":%d}`, i, spin)
	}
	f.publishRaw("raw-1", recs...)
	start := time.Now()
	_, stop := f.runWith(Config{AckWait: conf.Duration(time.Second), MaxDeliveries: 2}, rego.Options{EvalTimeout: 5 * time.Second})
	f.waitIdle()
	took := time.Since(start)
	stop()
	if took < 1500*time.Millisecond {
		t.Logf("the batch took only %s; the test wants more than AckWait (1s)", took)
	}
	if re := testutil.ToFloat64(mustVec(t, f.qreg, "sluice_queue_redelivered_messages_total")); re != 0 {
		t.Errorf("RAW batch redelivered %v times while being worked on (the batch took %s)", re, took)
	}
	if in := testutil.ToFloat64(mustVec(t, f.reg, "sluice_transform_records_total")); in != n {
		t.Errorf("records read from RAW = %v, want %d (the batch was evaluated more than once)", in, n)
	}
	if dlq := f.read(queue.StreamDLQ, "dlq.>"); len(dlq) != 0 {
		t.Fatalf("%d records dead-lettered: %s", len(dlq), dlq[0].Meta().Reason)
	}
	a := f.read(queue.StreamOut, "out.a")
	if len(a) != 1 || a[0].Meta().Count != n {
		t.Fatalf("out.a holds %d batches; want 1 of %d records", len(a), n)
	}
}

// Timeouts that cannot fit are refused, naming the fields.
func TestDecodeConfigRefusesTimeoutsThatCannotFit(t *testing.T) {
	cases := map[string]string{ // config → what the error says ("" = fine)
		"":                                       "",
		"eval_timeout: 5s\nack_wait: 30s\n":      "",
		"eval_timeout: 10s\n":                    "",
		"ack_wait: 1s\neval_timeout: 400ms\n":    "",
		"eval_timeout: 15s\n":                    "transform.eval_timeout: 15s: twice it (a record that times out is tried again) must be less than transform.ack_wait (30s)",
		"eval_timeout: 1m\nack_wait: 30s\n":      "transform.eval_timeout: 1m0s: twice it",
		"ack_wait: 500ms\neval_timeout: 100ms\n": "transform.ack_wait: 500ms: want at least 1s",
		"eval_timeout: -1s\n":                    `transform.eval_timeout (line 1): negative duration "-1s"`,
	}
	for src, want := range cases {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			t.Fatal(err)
		}
		var n *yaml.Node
		if len(doc.Content) > 0 {
			n = doc.Content[0]
		}
		_, err := DecodeConfig(n)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", src, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: err = %v, want %q", src, err, want)
		}
	}
}

// A record on which the policy times out goes to the DLQ alone, with a
// reason naming the timeout and the record, while the rest of its batch
// (slow enough, all told, to outlast AckWait) flows. Once the policy is
// fast, the dead-lettered record re-drives to RAW and flows too.
func TestOneSlowRecordGoesToDLQAloneAndRedrivesOnceFast(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// 100 ms a record, against a 450 ms limit: a calibrated spin can run
	// three times slower on a loaded machine (one in eight runs under load
	// timed out a spin of 150 ms against 300 ms).
	spin := spinFor(t, 100*time.Millisecond)
	recs := []string{}
	for i := 0; i < 5; i++ {
		recs = append(recs, fmt.Sprintf(`{"k":%d,"spin":%d}`, i, spin))
	}
	recs = append(recs, `{"loop":true}`) // times out on both tries
	f.publishRaw("raw-1", recs...)
	eng, stop := f.runWith(Config{AckWait: conf.Duration(time.Second), MaxDeliveries: 1}, rego.Options{EvalTimeout: 450 * time.Millisecond})
	defer func() { stop() }()
	f.waitIdle()
	a := f.read(queue.StreamOut, "out.a")
	if len(a) != 1 || a[0].Meta().Count != 5 {
		var counts []int
		for _, m := range a {
			counts = append(counts, m.Meta().Count)
		}
		t.Fatalf("out.a holds %d batches of %v records; want 1 of the 5 records that did not time out", len(a), counts)
	}
	dlq := f.read(queue.StreamDLQ, "dlq.>")
	if len(dlq) != 1 {
		reasons := []string{}
		for _, d := range dlq {
			reasons = append(reasons, d.Meta().Reason)
		}
		t.Fatalf("DLQ holds %d records, want only the one that timed out: %q", len(dlq), reasons)
	}
	if id, reason := dlq[0].Meta().RecordID, dlq[0].Meta().Reason; id != "raw-1/5" ||
		!strings.Contains(reason, "record raw-1/5") || !strings.Contains(reason, "exceeded the time limit of 450ms") {
		t.Fatalf("DLQ record %s: reason %q; want raw-1/5 and a reason naming it and the timeout", id, reason)
	}
	if got := testutil.ToFloat64(mustVecLabel(t, f.reg, "sluice_transform_dlq_total", "reason", "eval_timeout")); got != 1 {
		t.Errorf(`sluice_transform_dlq_total{reason="eval_timeout"} = %v, want 1`, got)
	}

	// The policy is fixed (the loop made cheap); the record re-drives.
	fast := strings.Replace(policy, "numbers.range(1, 100000000)", "numbers.range(1, 10)", 1)
	if err := os.WriteFile(filepath.Join(eng.Status().Dir, "t.rego"), []byte(fast), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m, err := ops.New(mctx, ops.Deps{Queue: f.q, Registry: prometheus.NewRegistry(), Policies: eng})
	if err != nil {
		t.Fatal(err)
	}
	plan, job, err := m.Redrive(ctx, ops.DLQFilter{Stage: "transform"}, false)
	if err != nil || plan.Count.Records != 1 || len(plan.Skipped) != 0 {
		t.Fatalf("re-drive plan %+v, %v; want the timed-out record", plan, err)
	}
	waitUntil(t, func() bool { return job.Status().State != ops.JobRunning })
	if st := job.Status(); st.State != ops.JobDone {
		t.Fatalf("re-drive %s: %s", st.State, st.Error)
	}
	f.waitIdle()
	a = f.read(queue.StreamOut, "out.a") // what came since the first read
	if len(a) != 1 || a[0].Meta().Count != 1 || !strings.HasSuffix(a[0].ID, "/raw-1/5/a") {
		t.Fatalf("after the re-drive out.a has %d new batches; want the re-driven record's alone", len(a))
	}
	if dlq := f.read(queue.StreamDLQ, "dlq.>"); len(dlq) != 0 {
		t.Fatalf("DLQ after the re-drive holds %d records: %s", len(dlq), dlq[0].Meta().Reason)
	}
}

// A source event on which the event policy times out is tried again, as a
// record is, and then each record of the batch goes to the DLQ with a
// reason naming the timeout and the record; another event's batch flows.
func TestEventPolicyTimeoutIsTriedAgainAndNamesEachRecord(t *testing.T) {
	f := newFixture(t)
	publish := func(id, event string, records ...string) {
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, id)
		h.Set(batch.HeaderEvent, event)
		recs := make([][]byte, len(records))
		for i, r := range records {
			recs[i] = []byte(r)
		}
		if err := f.q.PublishMessages(context.Background(), []*nats.Msg{{Subject: queue.RawSubject("src"), Header: h, Data: batch.Encode(recs)}}); err != nil {
			t.Fatal(err)
		}
	}
	publish("raw-slow", `{"spin":100000000}`, `{"to_a":true,"k":1}`, `{"to_a":true,"k":2}`)
	publish("raw-fast", `{"spin":1}`, `{"to_a":true,"k":3}`)
	_, stop := f.runWith(Config{}, rego.Options{EvalTimeout: 50 * time.Millisecond})
	f.waitIdle()
	stop()
	if a := f.read(queue.StreamOut, "out.a"); len(a) != 1 || a[0].ID != "raw-fast/a" {
		t.Fatalf("out.a holds %d batches; want raw-fast's alone", len(a))
	}
	dlq := f.read(queue.StreamDLQ, "dlq.>")
	if len(dlq) != 2 {
		t.Fatalf("DLQ holds %d records, want the 2 of raw-slow", len(dlq))
	}
	for _, d := range dlq {
		id, reason := d.Meta().RecordID, d.Meta().Reason
		if !strings.Contains(reason, "record "+id+":") || !strings.Contains(reason, "policy event") || !strings.Contains(reason, "exceeded the time limit") {
			t.Errorf("DLQ record %s: reason %q; want one naming the record and the event policy's timeout", id, reason)
		}
	}
	if got := testutil.ToFloat64(mustVec(t, f.reg, "sluice_transform_eval_timeouts_total")); got != 1 {
		t.Errorf("eval timeouts = %v, want 1 (counted, as for a record, when the first try times out and a second is made)", got)
	}
	if got := testutil.ToFloat64(mustVecLabel(t, f.reg, "sluice_transform_dlq_total", "reason", "eval_timeout")); got != 2 {
		t.Errorf(`sluice_transform_dlq_total{reason="eval_timeout"} = %v, want 2`, got)
	}
}

// mustVecLabel is mustVec over the series whose label is value.
func mustVecLabel(t *testing.T, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	t.Helper()
	fams, _ := reg.Gather()
	total := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c.Add(total)
	return c
}

// OUT stops answering (in a cluster: its quorum is gone) for longer than
// MaxDeliveries redeliveries take. The batch is the buffer's victim, not
// its own fault: it must wait and be published once OUT answers, not be
// counted towards MaxDeliveries and dead-lettered.
func TestUnansweringOUTDeadLettersNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 3
	for i := 0; i < n; i++ {
		f.publishRaw(fmt.Sprint("raw-", i), fmt.Sprintf(`{"to_a":true,"i":%d}`, i))
	}
	// Nothing captures out.> for a while: a publish there gets no answer.
	s, err := f.q.JetStream().Stream(ctx, queue.StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	moved := cfg
	moved.Subjects = []string{"elsewhere.>"}
	if _, err := f.q.JetStream().UpdateStream(ctx, moved); err != nil {
		t.Fatal(err)
	}
	_, stop := f.runWith(Config{AckWait: conf.Duration(3 * time.Second), MaxDeliveries: 2}, rego.Options{})
	defer stop()
	time.Sleep(8 * time.Second) // a nak and a restart take ~1 s: more than MaxDeliveries of them
	if _, err := f.q.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if si, err := s.Info(ctx); err == nil && si.State.Msgs >= n {
			break
		}
	}
	if dlq := f.read(queue.StreamDLQ, "dlq.>"); len(dlq) != 0 {
		t.Fatalf("%d records dead-lettered while OUT did not answer: %s", len(dlq), dlq[0].Meta().Reason)
	}
	if got := len(f.read(queue.StreamOut, "out.a")); got != n {
		t.Fatalf("OUT holds %d outputs, want %d", got, n)
	}
}
