package gcs

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/fetch/gcs/gcstest"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
	"github.com/sluicehq/sluice/rego"
)

// Swarm's style of event policy (Rego v0), choosing by object name.
const swarmEventPolicy = `package event

src[s] {
	startswith(input.cs.name, "github/")
	endswith(input.cs.name, ".json.gz")
	s := {"parser": "json", "compress": "gzip", "schema": "github_audit"}
}

src[s] {
	startswith(input.cs.name, "cloudtrail/")
	s := {"parser": "cloudtrail", "compress": "gzip", "schema": "cloudtrail"}
}

src[s] {
	endswith(input.cs.name, ".csv")
	s := {"parser": "csv", "schema": "csv_logs"}
}

src[s] {
	endswith(input.cs.name, ".zst")
	s := {"parser": "json", "compress": "zstd", "schema": "github_audit"}
}

src[s] {
	endswith(input.cs.name, ".jsonl")
	s := {"parser": "json", "schema": "github_audit"}
}
`

type fixture struct {
	t   *testing.T
	q   *queue.Queue
	gs  *gcstest.Server
	reg *prometheus.Registry
	log *syncBuf
	f   *Fetcher
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newStandIn(t *testing.T) *gcstest.Server {
	t.Helper()
	gs, err := gcstest.Start(gcstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.Close)
	// The Google clients find the stand-ins as they find any emulator.
	t.Setenv("STORAGE_EMULATOR_HOST", gs.StorageHost())
	t.Setenv("PUBSUB_EMULATOR_HOST", gs.PubSubHost())
	return gs
}

func policies(t *testing.T) *rego.Engine {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "event.rego"), []byte(swarmEventPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := rego.Load(dir, rego.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func newFixture(t *testing.T, dataDir string, maxBytes int64, mod func(*Config)) *fixture {
	t.Helper()
	gs := newStandIn(t)
	return newFixtureWith(t, gs, dataDir, maxBytes, mod)
}

func newFixtureWith(t *testing.T, gs *gcstest.Server, dataDir string, maxBytes int64, mod func(*Config)) *fixture {
	t.Helper()
	return newFixtureQueue(t, gs, queue.Options{DataDir: dataDir, MaxBytes: maxBytes}, mod)
}

func newFixtureQueue(t *testing.T, gs *gcstest.Server, qo queue.Options, mod func(*Config)) *fixture {
	t.Helper()
	qo.RetainDelivered = time.Millisecond
	if qo.MaxBytes > 0 && qo.MaxBytes < 16<<20 {
		// A buffer this small fills with delivered records, which go when
		// short of space only once older than the duplicate window: keep
		// it short. Larger fixtures keep the default, which their
		// store-once checks need.
		qo.DuplicateWindow = 100 * time.Millisecond
	}
	q, err := queue.Start(context.Background(), qo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	cfg := &Config{Name: "github", Type: "gcs", Project: gs.Options().Project, Subscription: gs.Options().Subscription}
	if mod != nil {
		mod(cfg)
	}
	fx := &fixture{t: t, q: q, gs: gs, reg: prometheus.NewRegistry(), log: &syncBuf{}}
	log := slog.New(slog.NewTextHandler(fx.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fx.f, err = New(cfg, Deps{Queue: q, Logger: log, Metrics: fx.reg, Policies: policies(t)})
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) start() (*actors.Runtime, func()) {
	fx.t.Helper()
	log := slog.New(slog.NewTextHandler(fx.log, nil))
	rt, err := actors.NewRuntime(log, prometheus.NewRegistry())
	if err != nil {
		fx.t.Fatal(err)
	}
	rt.Add(actors.StageFetch, "gcs/github", fx.f)
	rt.Start(context.Background())
	var once sync.Once
	stop := func() { once.Do(func() { _ = rt.Stop(15 * time.Second) }) }
	fx.t.Cleanup(stop)
	return rt, stop
}

// raw reads every message stored in RAW, oldest first.
func (fx *fixture) raw() []*nats.RawStreamMsg {
	fx.t.Helper()
	ctx := context.Background()
	s, err := fx.q.JetStream().Stream(ctx, queue.StreamRaw)
	if err != nil {
		fx.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		fx.t.Fatal(err)
	}
	var out []*nats.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, &nats.RawStreamMsg{Subject: m.Subject, Sequence: m.Sequence, Header: m.Header, Data: m.Data})
	}
	return out
}

// rawRecords counts each record in RAW.
func (fx *fixture) rawRecords() map[string]int {
	got := map[string]int{}
	for _, m := range fx.raw() {
		recs, err := batch.Decode(m.Data)
		if err != nil {
			fx.t.Fatalf("RAW message %d: %v", m.Sequence, err)
		}
		for _, r := range recs {
			got[string(r)]++
		}
	}
	return got
}

func (fx *fixture) waitRecords(n int, within time.Duration) map[string]int {
	fx.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := fx.rawRecords()
		total := 0
		for _, c := range got {
			total += c
		}
		if total >= n {
			return got
		}
		if time.Now().After(deadline) {
			fx.t.Fatalf("after %s RAW holds %d of %d records\nlog:\n%s", within, total, n, fx.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (fx *fixture) notifications(result string) float64 {
	return testutil.ToFloat64(fx.f.m.notifications.WithLabelValues(result))
}

func (fx *fixture) waitNotifications(result string, n float64) {
	fx.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for fx.notifications(result) < n {
		if time.Now().After(deadline) {
			fx.t.Fatalf("%s notifications: %v, want %v\nlog:\n%s", result, fx.notifications(result), n, fx.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (fx *fixture) dlq() []*nats.RawStreamMsg {
	fx.t.Helper()
	ctx := context.Background()
	s, err := fx.q.JetStream().Stream(ctx, queue.StreamDLQ)
	if err != nil {
		fx.t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	var out []*nats.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			out = append(out, &nats.RawStreamMsg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		}
	}
	return out
}

func jsonLines(from, n int) ([]byte, []string) {
	var b bytes.Buffer
	var recs []string
	for i := from; i < from+n; i++ {
		r := gcstest.SampleRecord(i)
		recs = append(recs, string(r))
		b.Write(r)
		b.WriteByte('\n')
	}
	return b.Bytes(), recs
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return out.Bytes()
}

func zstded(b []byte) []byte {
	zw, _ := zstd.NewWriter(nil)
	return zw.EncodeAll(b, nil)
}

func upload(t *testing.T, gs *gcstest.Server, name string, data []byte, contentEncoding string) int64 {
	t.Helper()
	gen, err := gs.Upload(context.Background(), name, data, contentEncoding)
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	return gen
}

func TestEveryEncodingArrivesWithEveryFieldIntact(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 256<<20, func(c *Config) { c.MaxBatchBytes = 64 << 10 })
	fx.start()
	var want []string
	add := func(name string, from int, enc func([]byte) []byte, contentEncoding string) {
		lines, recs := jsonLines(from, 300)
		upload(t, fx.gs, name, enc(lines), contentEncoding)
		want = append(want, recs...)
	}
	plain := func(b []byte) []byte { return b }
	add("github/a.json.gz", 0, gzipped, "")        // gzip bytes, no Content-Encoding
	add("github/b.json.gz", 1000, gzipped, "gzip") // transcoded by the client
	add("github/c.zst", 2000, zstded, "")          // zstd
	add("github/d.jsonl", 3000, plain, "")         // plain
	add("github/e.jsonl", 4000, gzipped, "")       // gzip the policy did not announce
	got := fx.waitRecords(len(want), 30*time.Second)
	for _, r := range want {
		if got[r] != 1 {
			t.Fatalf("record stored %d times, want once: %.120s", got[r], r)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("RAW holds %d distinct records, want %d", len(got), len(want))
	}
	fx.waitNotifications("acked", 5)
	for _, m := range fx.raw() {
		id := m.Header.Get(batch.HeaderMsgID)
		if !strings.HasPrefix(id, "gcs/github/audit-logs/github/") || m.Header.Get(batch.HeaderSchema) != "github_audit" || m.Header.Get(batch.HeaderKind) != "gcs" {
			t.Fatalf("RAW message headers: %v", m.Header)
		}
		if len(m.Data) > 80<<10 {
			t.Fatalf("RAW message of %d bytes; max_batch_bytes is 64KiB", len(m.Data))
		}
		if !strings.Contains(m.Header.Get(batch.HeaderEvent), `"cs":{"bucket":"audit-logs"`) {
			t.Fatalf("event header %s", m.Header.Get(batch.HeaderEvent))
		}
	}
}

func TestEventPolicyPicksParserAndSkipsTheRest(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 256<<20, nil)
	fx.start()
	upload(t, fx.gs, "cloudtrail/2026/11/24/trail.json.gz", gzipped([]byte(`{"Records":[{"eventName":"ConsoleLogin"},{"eventName":"DeleteBucket"}]}`)), "")
	upload(t, fx.gs, "exports/users.csv", []byte("user,action\nalice,login\nbob,logout\n"), "")
	upload(t, fx.gs, "images/cat.png", []byte("\x89PNG not a log"), "")
	got := fx.waitRecords(4, 20*time.Second)
	for _, r := range []string{`{"Records":[{"eventName":"ConsoleLogin"}]}`, `{"Records":[{"eventName":"DeleteBucket"}]}`, `{"user":"alice","action":"login"}`, `{"user":"bob","action":"logout"}`} {
		if got[r] != 1 {
			t.Fatalf("record %s stored %d times\nRAW: %v", r, got[r], got)
		}
	}
	fx.waitNotifications("skipped_policy", 1)
	schemas := map[string]bool{}
	for _, m := range fx.raw() {
		schemas[m.Header.Get(batch.HeaderSchema)] = true
	}
	if !schemas["cloudtrail"] || !schemas["csv_logs"] || len(schemas) != 2 {
		t.Fatalf("schemas in RAW: %v", schemas)
	}
}

func TestDuplicateAndOtherNotificationsStoreNothingTwice(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 256<<20, nil)
	fx.start()
	lines, recs := jsonLines(0, 500)
	gen := upload(t, fx.gs, "github/dup.json.gz", gzipped(lines), "")
	fx.waitRecords(len(recs), 20*time.Second)
	fx.waitNotifications("acked", 1)
	// Pub/Sub is at-least-once: the same notification again, a metadata
	// update, a notification without payload, and one for a deleted object.
	if err := fx.gs.Notify(context.Background(), "github/dup.json.gz", gen, "OBJECT_FINALIZE"); err != nil {
		t.Fatal(err)
	}
	if err := fx.gs.Notify(context.Background(), "github/dup.json.gz", gen, "OBJECT_METADATA_UPDATE"); err != nil {
		t.Fatal(err)
	}
	if err := fx.gs.NotifyNone(context.Background(), "github/dup.json.gz"); err != nil {
		t.Fatal(err)
	}
	goneLines, _ := jsonLines(7000, 10)
	gone := upload(t, fx.gs, "github/gone.json.gz", gzipped(goneLines), "")
	fx.waitNotifications("acked", 4)
	fx.waitNotifications("skipped_event", 1)
	got := fx.rawRecords()
	for _, r := range recs {
		if got[r] != 1 {
			t.Fatalf("record stored %d times after duplicate notifications", got[r])
		}
	}
	if err := fx.gs.Delete(context.Background(), "github/gone.json.gz"); err != nil {
		t.Fatal(err)
	}
	if err := fx.gs.Notify(context.Background(), "github/gone.json.gz", gone+1, "OBJECT_FINALIZE"); err != nil {
		t.Fatal(err)
	}
	fx.waitNotifications("deleted", 1)
}

func TestTooLargeObjectAndBrokenLineGoToTheDLQ(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 256<<20, func(c *Config) { c.MaxObjectBytes = 64 << 10 })
	fx.start()
	big, _ := jsonLines(0, 200) // ~200 KB plain
	upload(t, fx.gs, "github/big.jsonl", big, "")
	lines, recs := jsonLines(1000, 5)
	broken := bytes.Replace(lines, []byte("\n"), []byte("\n{\"broken\": \n"), 2)
	broken = bytes.Replace(broken, []byte("{\"broken\": \n"), nil, 1) // one broken line, after record 2
	upload(t, fx.gs, "github/broken.jsonl", broken, "")
	got := fx.waitRecords(5, 20*time.Second)
	for _, r := range recs {
		if got[r] != 1 {
			t.Fatalf("good record stored %d times", got[r])
		}
	}
	fx.waitNotifications("too_large", 1)
	fx.waitNotifications("acked", 1)
	dlq := fx.dlq()
	if len(dlq) != 2 {
		t.Fatalf("DLQ holds %d messages, want 2 (the large object, the broken line)", len(dlq))
	}
	var reasons []string
	for _, m := range dlq {
		reasons = append(reasons, m.Header.Get(batch.HeaderReason))
	}
	all := strings.Join(reasons, "\n")
	if !strings.Contains(all, "gs://audit-logs/github/big.jsonl") || !strings.Contains(all, "over max_object_bytes") ||
		!strings.Contains(all, "github/broken.jsonl") || !strings.Contains(all, "line 3: not valid JSON") {
		t.Fatalf("DLQ reasons:\n%s", all)
	}
	for _, m := range dlq {
		recs, err := batch.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(m.Header.Get(batch.HeaderReason), "line 3") && string(recs[0]) != `{"broken": ` {
			t.Fatalf("DLQ record %q", recs[0])
		}
	}
}

func TestFullRAWNacksAndLosesNothing(t *testing.T) {
	// A RAW of ~300 KB: the second object does not fit until RAW is drained.
	fx := newFixture(t, t.TempDir(), 1<<20, nil)
	rt, _ := fx.start()
	first, firstRecs := jsonLines(0, 200)
	second, secondRecs := jsonLines(5000, 200)
	upload(t, fx.gs, "github/1.jsonl", first, "")
	fx.waitRecords(len(firstRecs), 20*time.Second)
	upload(t, fx.gs, "github/2.jsonl", second, "")
	fx.waitNotifications("nacked", 2)
	if err := rt.Ready(); err == nil || !strings.Contains(err.Error(), "RAW is full") {
		t.Fatalf("readiness while RAW is full: %v", err)
	}
	// Drain RAW as the transform would, then the object comes in whole.
	ctx := context.Background()
	c, err := fx.q.Consumer(ctx, queue.ConsumerConfig{Stream: queue.StreamRaw, Durable: "transform", Subject: "raw.>"})
	if err != nil {
		t.Fatal(err)
	}
	drained := 0
	for drained < len(firstRecs)+len(secondRecs) {
		ds, err := c.Fetch(ctx, 16, 10*time.Second)
		if err != nil {
			t.Fatalf("after %d records: %v\nlog:\n%s", drained, err, fx.log.String())
		}
		for _, d := range ds {
			recs, _ := batch.Decode(d.Data)
			drained += len(recs)
			_ = d.Ack()
		}
		_ = fx.q.Trim(ctx)
	}
	if drained != len(firstRecs)+len(secondRecs) {
		t.Fatalf("drained %d records, want %d", drained, len(firstRecs)+len(secondRecs))
	}
	fx.waitNotifications("acked", 2)
}

// A slow read keeps its lease: the notification is extended, not redelivered.
func TestSlowObjectKeepsItsLease(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 256<<20, nil)
	fx.gs.SetReadDelay(13 * time.Second) // longer than the 10s ack deadline
	fx.start()
	lines, recs := jsonLines(0, 50)
	upload(t, fx.gs, "github/slow.jsonl", lines, "")
	got := fx.waitRecords(len(recs), 40*time.Second)
	fx.waitNotifications("acked", 1)
	if n := testutil.ToFloat64(fx.f.m.objects); n != 1 {
		t.Fatalf("object read %v times; a lost lease would read it again", n)
	}
	if testutil.ToFloat64(fx.f.m.extensions) < 1 {
		t.Fatal("no ack extension counted for a read longer than the ack deadline")
	}
	for _, r := range recs {
		if got[r] != 1 {
			t.Fatalf("record stored %d times", got[r])
		}
	}
	time.Sleep(2 * time.Second)
	if n := testutil.ToFloat64(fx.f.m.objects); n != 1 {
		t.Fatalf("object read %v times after the ack", n)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Project: "p"}, "subscription"},
		{Config{Project: "p", Subscription: "s", Parser: "xml", Schema: "x"}, "parser"},
		{Config{Project: "p", Subscription: "s", Compress: "lz4"}, "compress"},
		{Config{Project: "p", Subscription: "s", CredentialsFile: "/nonexistent/key.json"}, "credentials_file"},
		{Config{Project: "p", Subscription: "s", MaxBatchBytes: conf.ByteSize(100)}, "max_batch_bytes"},
	} {
		tc.cfg.SetDefaults()
		err := tc.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestMissingSubscriptionIsAClearError(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 64<<20, func(c *Config) { c.Subscription = "no-such-sub" })
	rt, _ := fx.start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rt.Ready()
		if err != nil && strings.Contains(err.Error(), "projects/"+fx.gs.Options().Project+"/subscriptions/no-such-sub does not exist") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ = fmt.Sprint

// Two sources on one bucket (two subscriptions on its topic, each with its
// own policies and sinks downstream) each store every record under their
// own subject: their batch IDs must not collide in the duplicate window.
func TestTwoSourcesOnOneBucketEachStoreEveryRecord(t *testing.T) {
	gs := newStandIn(t)
	if err := gs.AddSubscription(context.Background(), "sluice-second"); err != nil {
		t.Fatal(err)
	}
	first := newFixtureWith(t, gs, t.TempDir(), 256<<20, func(c *Config) { c.Schema = "github_audit"; c.MaxBatchBytes = 16 << 10 })
	second, err := New(&Config{Name: "second", Type: "gcs", Project: gs.Options().Project, Subscription: "sluice-second", Schema: "github_audit", MaxBatchBytes: 16 << 10},
		Deps{Queue: first.q, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := first.start()
	rt.Add(actors.StageFetch, "gcs/second", second)
	lines, recs := jsonLines(0, 100)
	upload(t, gs, "github/shared.jsonl", lines, "")
	deadline := time.Now().Add(20 * time.Second)
	for {
		per := map[string]map[string]int{}
		for _, m := range first.raw() {
			batchRecs, err := batch.Decode(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if per[m.Subject] == nil {
				per[m.Subject] = map[string]int{}
			}
			for _, r := range batchRecs {
				per[m.Subject][string(r)]++
			}
		}
		if len(per["raw.github"]) == len(recs) && len(per["raw.second"]) == len(recs) {
			for _, subj := range []string{"raw.github", "raw.second"} {
				for _, r := range recs {
					if per[subj][r] != 1 {
						t.Fatalf("%s holds a record %d times", subj, per[subj][r])
					}
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("raw.github holds %d and raw.second %d of %d records\nlog:\n%s", len(per["raw.github"]), len(per["raw.second"]), len(recs), first.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range first.raw() {
		id := m.Header.Get(batch.HeaderMsgID)
		if want := "gcs/" + strings.TrimPrefix(m.Subject, "raw.") + "/audit-logs/github/shared.jsonl#"; !strings.HasPrefix(id, want) {
			t.Fatalf("batch ID %q, want it to start with %q", id, want)
		}
	}
}

// A gzip bomb (10 MB of zeros in ~10 KB) is cut at max_decompressed_bytes:
// the object goes to the DLQ with the reason, the notification is acked,
// and the next object flows.
func TestGzipBombIsCutAtMaxDecompressedBytes(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 256<<20, func(c *Config) { c.MaxDecompressedBytes = 1 << 20 })
	fx.start()
	bomb := gcstest.GzipBomb(10 << 20)
	upload(t, fx.gs, "github/bomb.json.gz", bomb, "")
	fx.waitNotifications("too_large", 1)
	lines, recs := jsonLines(0, 10)
	upload(t, fx.gs, "github/after.jsonl", lines, "")
	fx.waitRecords(len(recs), 20*time.Second)
	fx.waitNotifications("acked", 1)
	var reasons []string
	for _, m := range fx.dlq() {
		reasons = append(reasons, m.Header.Get(batch.HeaderReason))
	}
	all := strings.Join(reasons, "\n")
	if !strings.Contains(all, "gs://audit-logs/github/bomb.json.gz") || !strings.Contains(all, "max_decompressed_bytes (1MiB)") {
		t.Fatalf("bomb of %d bytes; DLQ reasons:\n%s", len(bomb), all)
	}
	if n := testutil.ToFloat64(fx.f.m.objectBytes); n > float64(len(bomb)+len(lines)) {
		t.Fatalf("read %v bytes from GCS", n)
	}
}

// A record larger than one buffer message can carry (here: text of control
// bytes, which JSON escaping makes six times as long) goes to the DLQ with
// its size and the limit; the rest of the object flows and the
// notification is acked.
func TestOversizedRecordGoesToTheDLQAndTheRestFlows(t *testing.T) {
	gs := newStandIn(t)
	fx := newFixtureQueue(t, gs, queue.Options{DataDir: t.TempDir(), MaxBytes: 256 << 20, MaxPayload: 256 << 10}, func(c *Config) {
		c.Schema, c.Parser, c.MaxRecordBytes, c.MaxBatchBytes = "github_audit", "text", 64<<10, 64<<10
	})
	fx.start()
	obj := append(append([]byte("first\n"), gcstest.ExpandingLine(60<<10)...), "last\n"...)
	upload(t, gs, "github/oversized.txt", obj, "")
	got := fx.waitRecords(2, 20*time.Second)
	if got[`{"text":"first"}`] != 1 || got[`{"text":"last"}`] != 1 {
		t.Fatalf("RAW: %.300v", got)
	}
	fx.waitNotifications("acked", 1)
	dlq := fx.dlq()
	if len(dlq) != 1 {
		t.Fatalf("DLQ holds %d messages, want the oversized record", len(dlq))
	}
	reason := dlq[0].Header.Get(batch.HeaderReason)
	if !strings.Contains(reason, "gs://audit-logs/github/oversized.txt") || !strings.Contains(reason, "368651 bytes") || !strings.Contains(reason, "max payload 262144") {
		t.Fatalf("DLQ reason: %s", reason)
	}
}

func TestMaxRecordBytesMustFitOneBufferMessage(t *testing.T) {
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxPayload: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	_, err = New(&Config{Name: "big", Project: "p", Subscription: "s", Schema: "x", MaxRecordBytes: 1 << 20}, Deps{Queue: q})
	if err == nil || !strings.Contains(err.Error(), "max_record_bytes") {
		t.Fatalf("max_record_bytes of 1MiB with a max payload of 256KiB: %v", err)
	}
}
