package splunk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

const token = "0f4c1c9e-secret-hec-token"

type fixture struct {
	t   *testing.T
	q   *queue.Queue
	hec *hectest.Server
	log *syncBuffer
	reg *prometheus.Registry // of the sink last started
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newFixture(t *testing.T, hopts hectest.Options) *fixture {
	t.Helper()
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	if hopts.Token == "" {
		hopts.Token = token
	}
	hec, err := hectest.NewServer(hopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hec.Close)
	return &fixture{t: t, q: q, hec: hec, log: &syncBuffer{}}
}

// publish puts n records into out.splunk, perBatch per message; each
// record's data is {"n": i}.
func (f *fixture) publish(n, perBatch int) { f.t.Helper(); f.publishFrom(0, n, perBatch) }

// publishFrom publishes records from..n-1 as publish does, in batches
// numbered from from/perBatch.
func (f *fixture) publishFrom(from, n, perBatch int) {
	f.t.Helper()
	var msgs []*nats.Msg
	for b := from / perBatch; b*perBatch < n; b++ {
		var recs [][]byte
		for i := max(from, b*perBatch); i < min(n, (b+1)*perBatch); i++ {
			rec, _ := json.Marshal(batch.Output{ID: fmt.Sprint("r", i), Timestamp: 1732480000.5, Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"msg":"event %d"}`, i, i)), Sourcetype: "sls:audit"})
			recs = append(recs, rec)
		}
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprint("raw-", b, "/splunk"))
		h.Set(batch.HeaderCount, fmt.Sprint(len(recs)))
		h.Set(batch.HeaderFetchedAt, fmt.Sprint(time.Now().UnixNano()))
		msgs = append(msgs, &nats.Msg{Subject: queue.OutSubject("splunk"), Header: h, Data: batch.Encode(recs)})
	}
	if err := f.q.PublishMessages(context.Background(), msgs); err != nil {
		f.t.Fatal(err)
	}
}

// start runs a sink in a runtime; stop it with the returned function.
func (f *fixture) start(mod func(*Config)) (*actors.Runtime, func()) {
	f.t.Helper()
	cfg := &Config{Name: "splunk", Type: "splunk_hec", URL: f.hec.URL, Token: conf.Secret(token), Index: "main",
		BatchEvents: 100, Linger: conf.Duration(20 * time.Millisecond), MaxBackoff: conf.Duration(200 * time.Millisecond), PausedRetry: conf.Duration(200 * time.Millisecond)}
	if mod != nil {
		mod(cfg)
	}
	log := slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	f.reg = reg
	s, err := New(cfg, Deps{Queue: f.q, Logger: log, Metrics: reg})
	if err != nil {
		f.t.Fatal(err)
	}
	rt, err := actors.NewRuntime(log, reg)
	if err != nil {
		f.t.Fatal(err)
	}
	rt.Add(actors.StageSink, "splunk", s)
	rt.Start(context.Background())
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := rt.Stop(10 * time.Second); err != nil {
				f.t.Error(err)
			}
		}
	}
	f.t.Cleanup(stop)
	return rt, stop
}

// received counts each accepted event by its data's n.
func (f *fixture) received() map[int]int {
	got := map[int]int{}
	for _, e := range f.hec.Accepted() {
		var ev struct {
			Event struct{ N int } `json:"event"`
		}
		if err := json.Unmarshal(e.Raw, &ev); err != nil {
			f.t.Fatalf("accepted event %s: %v", e.Raw, err)
		}
		got[ev.Event.N]++
	}
	return got
}

func (f *fixture) waitDelivered(n int, within time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		idle, _ := f.q.Idle(context.Background())
		if f.hec.Count() >= n && idle {
			break
		}
		if time.Now().After(deadline) {
			if c, err := f.q.JetStream().Consumer(context.Background(), queue.StreamOut, "sink-splunk"); err == nil {
				info, _ := c.Info(context.Background())
				f.t.Logf("consumer: pending %d ackpending %d redelivered %d waiting %d delivered %+v ackfloor %+v", info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.Delivered, info.AckFloor)
			}
			f.t.Logf("log:\n%s", f.log.String())
			f.t.Fatalf("after %s: %d of %d events accepted, queue idle %v", within, f.hec.Count(), n, idle)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nextDeadLetter reads the DLQ's next message, waiting up to 5 s, and
// returns the consumer to read on.
func (f *fixture) nextDeadLetter() (*queue.Delivery, *queue.Consumer) {
	f.t.Helper()
	dlq, err := f.q.Consumer(context.Background(), queue.ConsumerConfig{Stream: queue.StreamDLQ, Durable: "check", Subject: "dlq.>"})
	if err != nil {
		f.t.Fatal(err)
	}
	d, err := dlq.Next(context.Background(), 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	return d, dlq
}

func (f *fixture) assertEachOnce(n int, except ...int) {
	f.t.Helper()
	skip := map[int]bool{}
	for _, e := range except {
		skip[e] = true
	}
	got := f.received()
	for i := 0; i < n; i++ {
		if skip[i] {
			if got[i] != 0 {
				f.t.Errorf("event %d accepted %d times, want 0", i, got[i])
			}
			continue
		}
		if got[i] != 1 {
			f.t.Errorf("event %d accepted %d times, want 1", i, got[i])
		}
	}
}

func TestEveryRecordArrivesOnceWithMetadata(t *testing.T) {
	f := newFixture(t, hectest.Options{})
	f.publish(2000, 50)
	f.start(nil)
	f.waitDelivered(2000, 20*time.Second)
	f.assertEachOnce(2000)
	var ev map[string]any
	_ = json.Unmarshal(f.hec.Accepted()[0].Raw, &ev)
	if ev["index"] != "main" || ev["sourcetype"] != "sls:audit" || ev["time"] != 1732480000.5 {
		t.Fatalf("event metadata: %v", ev)
	}
}

func TestOutageHoldsEverythingThenDelivers(t *testing.T) {
	f := newFixture(t, hectest.Options{})
	f.hec.Down()
	f.publish(500, 25)
	rt, _ := f.start(nil)
	time.Sleep(1500 * time.Millisecond)
	if idle, _ := f.q.Idle(context.Background()); idle {
		t.Fatal("batches were acked while Splunk was down")
	}
	if err := rt.Ready(); err == nil || !strings.Contains(err.Error(), "unavailable") && !strings.Contains(err.Error(), "health check") {
		t.Fatalf("ready while Splunk is down: %v", err)
	}
	if err := f.hec.Up(); err != nil {
		t.Fatal(err)
	}
	f.waitDelivered(500, 20*time.Second)
	f.assertEachOnce(500)
	waitFor(t, func() bool { return rt.Ready() == nil })
}

func TestBusyBurstsStillDeliverAll(t *testing.T) {
	f := newFixture(t, hectest.Options{})
	f.hec.Busy(6)
	f.publish(1000, 20)
	f.start(nil)
	f.waitDelivered(1000, 20*time.Second)
	f.assertEachOnce(1000)
	if f.hec.Requests() < 7 {
		t.Fatalf("only %d requests: the busy answers were not retried", f.hec.Requests())
	}
}

func TestPoisonEventGoesToDLQOthersArrive(t *testing.T) {
	f := newFixture(t, hectest.Options{})
	f.hec.Refuse(func(ev json.RawMessage) bool { return bytes.Contains(ev, []byte(`"n":137,`)) })
	f.publish(400, 40)
	f.start(nil)
	f.waitDelivered(399, 20*time.Second)
	f.assertEachOnce(400, 137)
	d, dlq := f.nextDeadLetter()
	recs, _ := batch.Decode(d.Data)
	reason := d.Meta().Reason
	if !bytes.Contains(recs[0], []byte(`"n":137,`)) || !strings.Contains(reason, "code 6: Invalid data format") || d.Subject != "dlq.sink.splunk" {
		t.Fatalf("DLQ: subject %s reason %q record %s", d.Subject, reason, recs[0])
	}
	if d.Meta().Origin != "out.splunk" {
		t.Fatalf("origin %q", d.Meta().Origin)
	}
	if _, err := dlq.Next(context.Background(), 500*time.Millisecond); err == nil {
		t.Fatal("more than one record in the DLQ")
	}
}

// A record that is not JSON goes to the DLQ and the others arrive, whether
// the sink checks it (a batch from elsewhere) or the transform vouched for
// it (then Splunk refuses it, and the sink finds which one).
func TestRecordThatIsNotJSONGoesToDLQ(t *testing.T) {
	for _, c := range []struct{ encoded, bad, reason string }{
		{"", `{"id":"r7","timestamp":1732480000.5,"data":{"n":7,"x":tru}}`, "not an output record"},
		{batch.EncodedTransform, `{"id":"r7","timestamp":1732480000.5,"data":{"n":7,"x":tru}}`, "Invalid data format"},
		{batch.EncodedDataLast, `{"id":"r7","timestamp":1732480000.5,"data":{"n":7,"x":tru}}`, "Invalid data format"},
	} {
		t.Run(fmt.Sprintf("encoded=%q", c.encoded), func(t *testing.T) {
			f := newFixture(t, hectest.Options{})
			var recs [][]byte
			for i := range 20 {
				o := batch.Output{ID: fmt.Sprint("r", i), Timestamp: 1732480000.5, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
				rec, _ := o.AppendJSON(nil)
				if i == 7 {
					rec = []byte(c.bad)
				}
				recs = append(recs, rec)
			}
			h := nats.Header{}
			h.Set(batch.HeaderMsgID, "raw-0/splunk")
			if c.encoded != "" {
				h.Set(batch.HeaderEncoded, c.encoded)
			}
			if err := f.q.PublishMessages(context.Background(), []*nats.Msg{{Subject: queue.OutSubject("splunk"), Header: h, Data: batch.Encode(recs)}}); err != nil {
				t.Fatal(err)
			}
			f.start(nil)
			f.waitDelivered(19, 20*time.Second)
			f.assertEachOnce(20, 7)
			d, _ := f.nextDeadLetter()
			got, _ := batch.Decode(d.Data)
			if len(got) != 1 || string(got[0]) != string(recs[7]) || !strings.Contains(d.Meta().Reason, c.reason) {
				t.Fatalf("DLQ: %q, reason %q, want %q", got, d.Meta().Reason, c.reason)
			}
		})
	}
}

func TestWrongTokenPausesWithoutLeakingThenRestartDelivers(t *testing.T) {
	f := newFixture(t, hectest.Options{})
	f.publish(300, 30)
	rt, stop := f.start(func(c *Config) { c.Token = "wrong-token-value-1234" })
	waitFor(t, func() bool {
		err := rt.Ready()
		return err != nil && strings.Contains(err.Error(), "code 4: Invalid token")
	})
	if f.hec.Count() != 0 {
		t.Fatal("events accepted with a wrong token")
	}
	stop()
	for _, secret := range []string{"wrong-token-value-1234", token} {
		if strings.Contains(f.log.String(), secret) || strings.Contains(rt.Ready().Error(), secret) {
			t.Fatalf("token %q appears in logs or readiness", secret)
		}
	}
	if !strings.Contains(f.log.String(), "paused") {
		t.Fatalf("no log line says the sink paused:\n%s", f.log.String())
	}
	f.start(nil) // restart with the right token
	f.waitDelivered(300, 20*time.Second)
	f.assertEachOnce(300)
}

func TestIndexerAckHoldsTheBatchUntilIndexed(t *testing.T) {
	f := newFixture(t, hectest.Options{Ack: true, AckDelay: 1500 * time.Millisecond})
	f.publish(100, 10)
	f.start(func(c *Config) { c.Ack = true })
	waitFor(t, func() bool { return f.hec.Count() == 100 })
	if idle, _ := f.q.Idle(context.Background()); idle {
		t.Fatal("batches acked before Splunk said they were indexed")
	}
	f.waitDelivered(100, 10*time.Second)
	f.assertEachOnce(100)
}

// ack: true against a token whose indexer acknowledgement is off: what HEC
// took is counted as received (sending it again would copy it), the sink
// pauses without posting, and resumes when the token has acks again.
func TestAckOffTokenPausesThenResumes(t *testing.T) {
	f := newFixture(t, hectest.Options{}) // the token's useACK is off
	f.publish(10, 10)
	rt, _ := f.start(func(c *Config) { c.Ack = true })
	waitFor(t, func() bool { idle, _ := f.q.Idle(context.Background()); return idle && f.hec.Count() == 10 })
	if err := rt.Ready(); err == nil || !strings.Contains(err.Error(), "indexer acknowledgement off") {
		t.Fatalf("readiness %v, want it to say the token has indexer acknowledgement off", err)
	}
	f.publishFrom(10, 20, 10)
	time.Sleep(time.Second) // PausedRetry is 200 ms: a few probes, no posts
	if n := f.hec.Requests(); n != 1 {
		t.Fatalf("%d event requests while paused, want the 1 that found acks off", n)
	}
	if f.hec.AckRequests() == 0 {
		t.Fatal("the paused sink never asked whether acks are on again")
	}
	f.hec.UseACK(true)
	f.waitDelivered(20, 10*time.Second)
	f.assertEachOnce(20)
	waitFor(t, func() bool { return rt.Ready() == nil })
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cases := map[string]string{
		"name: s\ntype: splunk_hec\ntoken: t\n":                                                       "url: required",
		"name: s\ntype: splunk_hec\nurl: ftp://x\ntoken: t\n":                                         `url: "ftp://x" is not an http(s) URL`,
		"name: s\ntype: splunk_hec\nurl: https://x:8088\n":                                            "token: required",
		"name: s\ntype: splunk_hec\nurl: https://x:8088\ntoken: t\nlinger: soon\n":                    "linger (line 5): bad duration",
		"name: s\ntype: splunk_hec\nurl: https://x:8088\ntoken: t\ntls: {verify: no}\n":               `tls.verify (line 5): unknown key`,
		"name: s\ntype: splunk_hec\nurl: https://x:8088\ntoken: t\nack_wait: 1s\ntimeout: 3s\n":       "ack_wait: 1s must be longer than timeout (3s)",
		"name: s\ntype: splunk_hec\nurl: https://x:8088\ntoken: t\nack_wait: 500ms\ntimeout: 100ms\n": "ack_wait: 500ms: want at least 1s",
		"name: s\ntype: splunk_hec\nurl: https://x:8088\ntoken: t\nlinger: 40s\n":                     "linger: 40s must be shorter than half of ack_wait (1m0s)",
	}
	for src, want := range cases {
		var n yamlNode
		if err := unmarshalYAML(src, &n); err != nil {
			t.Fatal(err)
		}
		_, err := Component().Decode(&n)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", src, err, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An outage many times longer than AckWait: held batches are kept alive,
// not redelivered (duplicates) nor counted towards MaxDeliveries (DLQ).
func TestLongOutageNeitherDeadLettersNorDuplicates(t *testing.T) {
	f := newFixture(t, hectest.Options{})
	f.hec.Down()
	f.publish(3000, 20) // 150 batches: more than the senders hold
	f.start(func(c *Config) {
		c.Timeout = conf.Duration(300 * time.Millisecond)
		c.AckWait = conf.Duration(time.Second)
		c.InFlight = 2
		c.BatchEvents = 100
	})
	time.Sleep(12 * time.Second) // > MaxDeliveries × AckWait
	if err := f.hec.Up(); err != nil {
		t.Fatal(err)
	}
	f.waitDelivered(3000, 30*time.Second)
	f.assertEachOnce(3000)
	s, _ := f.q.JetStream().Stream(context.Background(), queue.StreamDLQ)
	if info, _ := s.Info(context.Background()); info.State.Msgs != 0 {
		t.Fatalf("%d records dead-lettered during an outage", info.State.Msgs)
	}
}

// A post that outlasts AckWait (the client's timeout, then retryablehttp's
// retries) keeps its batches' lease: JetStream does not hand them to
// another sender while the first is still sending them (copies).
func TestPostOutlastingAckWaitKeepsItsLease(t *testing.T) {
	f := newFixture(t, hectest.Options{})
	// The first two attempts hang until the client gives up (timeout), the
	// third is answered: one post takes ~1.6 s, ack_wait is 1 s.
	f.hec.HangNext(2, 10*time.Second)
	f.publish(10, 10)
	f.start(func(c *Config) {
		c.Timeout = conf.Duration(700 * time.Millisecond)
		c.AckWait = conf.Duration(time.Second)
		c.InFlight = 2
	})
	f.waitDelivered(10, 10*time.Second)
	time.Sleep(time.Second) // room for a copy to arrive
	f.assertEachOnce(10)
	if n := f.hec.Requests(); n != 3 {
		t.Errorf("%d event requests, want 3 (two hung attempts and the one answered)", n)
	}
}
