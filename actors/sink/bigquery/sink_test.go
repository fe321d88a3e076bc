package bigquery

import (
	"context"
	"encoding/json"
	"fmt"
	dto "github.com/prometheus/client_model/go"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gbq "cloud.google.com/go/bigquery"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/api/option"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/actors/sink/bigquery/bqtest"
	"github.com/sluicehq/sluice/actors/transform"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
	"github.com/sluicehq/sluice/rego"
)

type fixture struct {
	t    *testing.T
	q    *queue.Queue
	bq   *bqtest.Server
	n    int
	sink *Sink
	reg  *prometheus.Registry // the sink's metrics, once started
	// fetched is the fetch time publish gives batches (zero: now).
	fetched time.Time
}

func newFixture(t *testing.T, opts bqtest.Options, mod ...func(*queue.Options)) *fixture {
	t.Helper()
	qo := queue.Options{DataDir: t.TempDir(), MaxBytes: 256 << 20}
	for _, m := range mod {
		m(&qo)
	}
	q, err := queue.Start(context.Background(), qo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	opts.Project = "proj"
	s, err := bqtest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &fixture{t: t, q: q, bq: s}
}

// publish puts one OUT batch of outputs into out.bq.
func (f *fixture) publish(outs ...batch.Output) {
	f.t.Helper()
	var recs [][]byte
	for _, o := range outs {
		rec, err := json.Marshal(o)
		if err != nil {
			f.t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	f.n++
	h := nats.Header{}
	h.Set(batch.HeaderMsgID, fmt.Sprint("raw-", f.n, "/bq"))
	h.Set(batch.HeaderCount, fmt.Sprint(len(recs)))
	fetched := f.fetched
	if fetched.IsZero() {
		fetched = time.Now()
	}
	h.Set(batch.HeaderFetchedAt, strconv.FormatInt(fetched.UnixNano(), 10))
	if err := f.q.PublishMessages(context.Background(), []*nats.Msg{{Subject: queue.OutSubject("bq"), Header: h, Data: batch.Encode(recs)}}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) start(tune ...func(*Config)) func() {
	f.t.Helper()
	cfg := &Config{Name: "bq", Type: "bigquery", Project: "proj", Dataset: "logs", Endpoint: f.bq.URL, WriteEndpoint: f.bq.GRPCAddr,
		IntegerFields: []string{"count"}, MaxBackoff: conf.Duration(200 * time.Millisecond)}
	for _, t := range tune {
		t(cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	f.reg = reg
	s, err := New(cfg, Deps{Queue: f.q, Logger: log, Metrics: reg})
	if err != nil {
		f.t.Fatal(err)
	}
	f.sink = s
	rt, err := actors.NewRuntime(log, reg)
	if err != nil {
		f.t.Fatal(err)
	}
	rt.Add(actors.StageSink, "bq", s)
	rt.Start(context.Background())
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = rt.Stop(10 * time.Second)
		}
	}
	f.t.Cleanup(stop)
	return stop
}

func (f *fixture) waitFor(within time.Duration, what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// acked is how many OUT batches the sink has acked.
func (f *fixture) acked() uint64 {
	floor, err := f.q.AckFloor(context.Background(), queue.StreamOut, "sink-bq")
	if err != nil {
		return 0
	}
	return floor
}

// unhealthy is what the sink's health says is wrong ("" when nothing).
func (f *fixture) unhealthy() string {
	f.sink.mu.Lock()
	h := f.sink.health
	f.sink.mu.Unlock()
	if h == nil {
		return ""
	}
	return h.Status().Unhealthy
}

// settled is true when the sink has nothing left in OUT: every batch it
// was given (and every copy it requeued) acked.
func (f *fixture) settled() bool {
	infos, err := f.q.ConsumerInfos(context.Background(), queue.StreamOut)
	if err != nil {
		return false
	}
	for _, ci := range infos {
		if ci.Name == "sink-bq" {
			return ci.NumPending == 0 && ci.NumAckPending == 0
		}
	}
	return false
}

func (f *fixture) dead() []queue.Stored {
	var out []queue.Stored
	_ = f.q.Scan(context.Background(), queue.ScanOptions{Stream: queue.StreamDLQ}, func(s queue.Stored) (bool, error) {
		out = append(out, s)
		return true, nil
	})
	return out
}

func out(id, table, data string) batch.Output {
	return batch.Output{ID: id, Timestamp: 1732480000.25, Table: table, Data: json.RawMessage(data)}
}

func ids(rows []map[string]any) string {
	var s []string
	for _, r := range rows {
		s = append(s, fmt.Sprint(r["id"]))
	}
	return strings.Join(s, ",")
}

func TestRowsLandTypedAndAckedAfter(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.publish(out("a", "audit", `{"actor":"octocat","count":3,"score":1.5,"meta":{"repo":"x"}}`),
		batch.Output{ID: "b", Timestamp: 1732480001, Dataset: "github", Table: "audit", Partition: "hour", Data: json.RawMessage(`{"actor":"hubot"}`)})
	f.start()
	f.waitFor(10*time.Second, "both rows written and the batch acked", func() bool {
		return len(f.bq.Rows("proj", "logs", "audit")) == 1 && len(f.bq.Rows("proj", "github", "audit")) == 1 && f.acked() == 1
	})
	if p, q := f.bq.Partitioning("proj", "logs", "audit"), f.bq.Partitioning("proj", "github", "audit"); p != "DAY on timestamp" || q != "HOUR on timestamp" {
		t.Fatalf("partitioning: %q by default, %q where the policy said hour", p, q)
	}
	r := f.bq.Rows("proj", "logs", "audit")[0]
	if r["id"] != "a" || r["actor"] != "octocat" || r["count"] != int64(3) || r["score"] != 1.5 || r["meta"].(map[string]any)["repo"] != "x" {
		t.Fatalf("row: %v", r)
	}
	if ts := r["timestamp"].(time.Time); ts.UnixMicro() != 1732480000250000 {
		t.Fatalf("timestamp: %v", ts)
	}
	schema := f.bq.Schema("proj", "logs", "audit")
	types := map[string]string{}
	for _, c := range schema.Fields {
		types[c.Name] = c.Type
	}
	if types["count"] != "INTEGER" || types["score"] != "FLOAT" || types["timestamp"] != "TIMESTAMP" || types["meta"] != "RECORD" {
		t.Fatalf("schema: %v", types)
	}
}

// A new field widens the table; with a propagation delay its rows wait
// un-acked while rows of the old shape and other tables keep flowing.
func TestWideningWaitsForPropagationAndOthersFlow(t *testing.T) {
	f := newFixture(t, bqtest.Options{Propagation: 2 * time.Second})
	f.start()
	f.publish(out("1", "audit", `{"actor":"a"}`))
	f.waitFor(10*time.Second, "the first row", func() bool { return f.acked() == 1 })
	f.publish(out("2", "audit", `{"actor":"b","repo":"new"}`))
	f.waitFor(5*time.Second, "the widening", func() bool { return len(f.bq.Schema("proj", "logs", "audit").Fields) == 4 })
	f.publish(out("3", "audit", `{"actor":"c"}`), out("o1", "other", `{"x":"y"}`))
	f.waitFor(5*time.Second, "old-shape and other-table rows while the new schema propagates", func() bool {
		return ids(f.bq.Rows("proj", "logs", "audit")) == "1,3" && len(f.bq.Rows("proj", "logs", "other")) == 1
	})
	if f.acked() != 1 {
		t.Fatalf("ack floor %d while row 2 waits: a batch was acked early", f.acked())
	}
	f.waitFor(10*time.Second, "row 2 after propagation", func() bool { return ids(f.bq.Rows("proj", "logs", "audit")) == "1,3,2" && f.acked() == 3 })
	if r := f.bq.Rows("proj", "logs", "audit")[2]; r["repo"] != "new" {
		t.Fatalf("row 2: %v", r)
	}
}

// A field whose type clashes with the table's goes to the DLQ with the
// table, the field and both types; the rest of its batch is written.
func TestTypeConflictDeadLettersExactlyThatRow(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.start()
	f.publish(out("1", "audit", `{"actor":"a","n":1}`))
	f.waitFor(10*time.Second, "the first row", func() bool { return f.acked() == 1 })
	f.publish(out("2", "audit", `{"actor":"b","n":"not a number"}`), out("3", "audit", `{"actor":"c","n":2}`))
	f.waitFor(10*time.Second, "the batch settled", func() bool { return f.acked() == 2 })
	if got := ids(f.bq.Rows("proj", "logs", "audit")); got != "1,3" {
		t.Fatalf("rows: %s", got)
	}
	dead := f.dead()
	if len(dead) != 1 {
		t.Fatalf("%d records in the DLQ, want 1", len(dead))
	}
	reason := dead[0].Header.Get(batch.HeaderReason)
	if reason != "table logs.audit: field n: FLOAT in the table, STRING in the record" {
		t.Fatalf("reason: %q", reason)
	}
	recs, _ := batch.Decode(dead[0].Data)
	if len(recs) != 1 || !strings.Contains(string(recs[0]), `"id":"2"`) {
		t.Fatalf("dead record: %s", recs)
	}
}

// A table deleted mid-run is created again; BigQuery unavailable for a
// while loses nothing.
func TestDeletedTableAndOutageLoseNothing(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.start()
	f.publish(out("1", "audit", `{"actor":"a"}`))
	f.waitFor(10*time.Second, "the first row", func() bool { return f.acked() == 1 })
	f.bq.DeleteTable("proj", "logs", "audit")
	f.publish(out("2", "audit", `{"actor":"b"}`))
	f.waitFor(15*time.Second, "row 2 in the re-created table", func() bool { return ids(f.bq.Rows("proj", "logs", "audit")) == "2" && f.acked() == 2 })
	f.bq.Unavailable(20)
	for i := 3; i < 8; i++ {
		f.publish(out(fmt.Sprint(i), "audit", `{"actor":"c"}`))
	}
	f.waitFor(30*time.Second, "every row after the outage", func() bool { return f.acked() == 7 })
	if got := ids(f.bq.Rows("proj", "logs", "audit")); got != "2,3,4,5,6,7" {
		t.Fatalf("rows: %s", got)
	}
	if len(f.dead()) != 0 {
		t.Fatalf("%d records dead-lettered", len(f.dead()))
	}
}

// A RAW batch read twice beyond the dedup window (a new message ID) gives
// the same rows twice with the same id: the policy names no id, so it is a
// hash of the output's data, and the duplicate is one GROUP BY id away.
func TestRedeliveredRAWGivesRowsWithTheSameID(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	dir := t.TempDir()
	policy := "package schema.t\n\nlog contains {\"table\": \"audit\", \"timestamp\": input.ts, \"data\": object.remove(input, [\"ts\"])}\n"
	if err := os.WriteFile(filepath.Join(dir, "t.rego"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := rego.Load(dir, rego.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transform.New(transform.Config{}, transform.Deps{Queue: f.q, Engine: eng, Sinks: map[string]string{"bq": "bigquery"}, Types: component.NewRegistry(Component())})
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := actors.NewRuntime(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	rt.Add(actors.StageTransform, "transform", tr)
	rt.Start(context.Background())
	t.Cleanup(func() { _ = rt.Stop(10 * time.Second) })
	f.start()
	for _, id := range []string{"sls/p/l/0/cursor-1/0", "sls/p/l/0/cursor-1/0#again"} {
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, id)
		h.Set(batch.HeaderSchema, "t")
		h.Set(batch.HeaderCount, "2")
		recs := [][]byte{[]byte(`{"ts":1732480000,"actor":"a"}`), []byte(`{"ts":1732480001,"actor":"b"}`)}
		if err := f.q.PublishMessages(context.Background(), []*nats.Msg{{Subject: queue.RawSubject("src"), Header: h, Data: batch.Encode(recs)}}); err != nil {
			t.Fatal(err)
		}
	}
	f.waitFor(15*time.Second, "four rows", func() bool { return len(f.bq.Rows("proj", "logs", "audit")) == 4 })
	byID := map[string][]string{}
	for _, r := range f.bq.Rows("proj", "logs", "audit") {
		byID[r["id"].(string)] = append(byID[r["id"].(string)], r["actor"].(string))
	}
	if len(byID) != 2 {
		t.Fatalf("rows by id: %v, want two ids with two rows each", byID)
	}
	for id, actors := range byID {
		if len(actors) != 2 || actors[0] != actors[1] || id == "" {
			t.Fatalf("id %q has rows %v", id, actors)
		}
	}
}

// A backlog larger than one AppendRows request may be (10 MB) is sent in
// requests of batch_rows and batch_bytes.
func TestLargeBacklogIsSplitIntoRequests(t *testing.T) {
	f := newFixture(t, bqtest.Options{}, func(o *queue.Options) { o.MaxPayload = 32 << 20 })
	pad := strings.Repeat("x", 8000)
	var outs []batch.Output
	for i := 0; i < 2000; i++ { // 16 MB in one OUT batch
		outs = append(outs, out(fmt.Sprint(i), "audit", fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad)))
	}
	f.publish(outs...)
	f.start()
	f.waitFor(30*time.Second, "2,000 rows of 8 KB", func() bool { return f.bq.RowCount("proj", "logs", "audit") == 2000 && f.acked() == 1 })
	if f.bq.Appends() < 4 {
		t.Fatalf("16 MB went in %d requests", f.bq.Appends())
	}
}

func TestBufferBoundsTheBatchesHeldAndAllArrive(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.bq.Slow(20 * time.Millisecond)
	for b := 0; b < 30; b++ {
		var outs []batch.Output
		for i := 0; i < 20; i++ { // ~2.4 KB a batch
			outs = append(outs, out(fmt.Sprint(b, "-", i), "audit", fmt.Sprintf(`{"n":%d,"pad":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`, i)))
		}
		f.publish(outs...)
	}
	f.start(func(c *Config) { c.BatchBytes = 4 << 10; c.BufferBytes = 8 << 10 })
	peak := 0.0
	f.waitFor(30*time.Second, "600 rows through an 8 KiB buffer", func() bool {
		peak = max(peak, testutil.ToFloat64(f.sink.m.buffered))
		return f.bq.RowCount("proj", "logs", "audit") == 600 && f.acked() == 30
	})
	if peak == 0 || peak > 8<<10 {
		t.Fatalf("buffered bytes peaked at %.0f, want 1 to %d", peak, 8<<10)
	}
	if left := testutil.ToFloat64(f.sink.m.buffered); left != 0 {
		t.Fatalf("%.0f bytes still counted as buffered after every batch was acked", left)
	}
}

// A data key that is the id or timestamp column in another case goes to
// the DLQ naming both; the id column always holds the output's id.
func TestCaseOfIDAndTimestampKeys(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.start()
	f.publish(out("1", "app", `{"m":"a"}`))
	f.waitFor(10*time.Second, "the first row", func() bool { return f.acked() == 1 })
	var outs []batch.Output
	for i := 0; i < 20; i++ {
		outs = append(outs, out(fmt.Sprint("s", i), "app", fmt.Sprintf(`{"ID":"data-%d","m":"b"}`, i)),
			out(fmt.Sprint("t", i), "app", `{"Timestamp":"2026-12-07T10:00:00Z","m":"c"}`))
	}
	outs = append(outs, out("2", "app", `{"m":"d"}`))
	f.publish(outs...)
	f.waitFor(10*time.Second, "the batch settled", func() bool { return f.acked() == 2 })
	if got := ids(f.bq.Rows("proj", "logs", "app")); got != "1,2" {
		t.Fatalf("rows: %s", got)
	}
	dead := f.dead()
	if len(dead) != 40 {
		t.Fatalf("%d records in the DLQ, want 40", len(dead))
	}
	for _, d := range dead {
		r := d.Header.Get(batch.HeaderReason)
		if !strings.Contains(r, "and the sink's id column") && !strings.Contains(r, "and the sink's timestamp column") {
			t.Fatalf("reason: %q", r)
		}
	}
}

// BigQuery refuses a schema for good (a reserved name, too many columns,
// too deep): those rows go to the DLQ with its answer, and the batches of
// another table keep flowing through the same small buffer.
func TestSchemaBigQueryRefusesGoesToDLQAndOthersFlow(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	pad := strings.Repeat("x", 1000)
	deep := `"leaf"`
	for i := 0; i < 16; i++ {
		deep = fmt.Sprintf(`{"r%d":%s}`, i, deep)
	}
	bad := 0
	for b := 0; b < 30; b++ { // ~30 KB a batch, ~900 KB in all: many times the buffer
		var outs []batch.Output
		for i := 0; i < 30; i++ {
			data := fmt.Sprintf(`{"_FILE_NAME":"f%d","pad":%q}`, i, pad)
			if i%3 == 1 {
				data = fmt.Sprintf(`{"deep":%s,"pad":%q}`, deep, pad)
			}
			outs = append(outs, out(fmt.Sprint("b", b, "-", i), "refused", data))
			bad++
		}
		f.publish(outs...)
	}
	for i := 0; i < 5; i++ {
		f.publish(out(fmt.Sprint("g", i), "good", `{"m":"fine"}`))
	}
	f.start(func(c *Config) { c.BatchBytes = 16 << 10; c.BufferBytes = 64 << 10 })
	f.waitFor(15*time.Second, "every row of the good table", func() bool { return len(f.bq.Rows("proj", "logs", "good")) == 5 })
	f.waitFor(15*time.Second, "every batch acked", func() bool { return f.acked() == 35 })
	dead := f.dead()
	if len(dead) != bad {
		t.Fatalf("%d records in the DLQ, want %d", len(dead), bad)
	}
	for _, d := range dead {
		r := d.Header.Get(batch.HeaderReason)
		if !strings.HasPrefix(r, "table logs.refused: ") || !strings.Contains(r, `Invalid field name "_FILE_NAME"`) && !strings.Contains(r, "nested") {
			t.Fatalf("reason: %q", r)
		}
	}
}

// Requests are cut by the rows' encoded (proto) size, not their JSON: a
// number is ~2 bytes of JSON and 9 of proto. A row too large for any
// request goes to the DLQ; the others land. (The stand-in takes requests
// of at most 1 MiB here instead of 10 MB, and batch_bytes is 512 KiB: the
// same ratios with a tenth of the numbers.)
func TestRequestsAreCutByEncodedSize(t *testing.T) {
	f := newFixture(t, bqtest.Options{MaxRequest: 1 << 20})
	nums := func(n int) string {
		b := make([]string, n)
		for i := range b {
			b[i] = fmt.Sprint(i % 10)
		}
		return "[" + strings.Join(b, ",") + "]"
	}
	row := nums(500) // 1 KB of JSON, ~4.5 KB of proto
	var outs []batch.Output
	for i := 0; i < 300; i++ { // 300 KB of JSON, ~1.35 MB of proto
		outs = append(outs, out(fmt.Sprint(i), "nums", fmt.Sprintf(`{"v":%s}`, row)))
	}
	f.publish(outs...)
	f.publish(out("huge", "nums", fmt.Sprintf(`{"v":%s}`, nums(150_000)))) // 300 KB of JSON, ~1.35 MB of proto
	f.start(func(c *Config) { c.BatchBytes = 512 << 10 })
	f.waitFor(15*time.Second, "300 rows and both batches settled", func() bool { return f.bq.RowCount("proj", "logs", "nums") == 300 && f.acked() == 2 })
	dead := f.dead()
	if len(dead) != 1 || !strings.Contains(dead[0].Header.Get(batch.HeaderReason), "too large") {
		var reasons []string
		for _, d := range dead {
			reasons = append(reasons, d.Header.Get(batch.HeaderReason))
		}
		t.Fatalf("DLQ: %q, want the huge row as too large", reasons)
	}
	if got := testutil.ToFloat64(f.sink.m.retries.WithLabelValues("logs.nums")); got != 0 {
		t.Fatalf("%v appends retried", got)
	}
}

// A table re-created with fewer columns than the stream knows: the sink
// widens it again and waits for the widened schema with backoff, not in a
// loop of table reads and new streams.
func TestRecreatedNarrowerTableIsWaitedForWithBackoff(t *testing.T) {
	f := newFixture(t, bqtest.Options{Propagation: 2 * time.Second})
	f.publish(out("1", "t", `{"a":"x","b":"y"}`))
	f.start(func(c *Config) { c.MaxBackoff = conf.Duration(5 * time.Second) })
	f.waitFor(10*time.Second, "the first row", func() bool { return f.acked() == 1 })
	ctx := context.Background()
	c, err := gbq.NewClient(ctx, "proj", option.WithEndpoint(f.bq.URL+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.bq.DeleteTable("proj", "logs", "t")
	narrow := gbq.Schema{{Name: "id", Type: gbq.StringFieldType}, {Name: "timestamp", Type: gbq.TimestampFieldType}, {Name: "a", Type: gbq.StringFieldType}}
	if err := c.Dataset("logs").Table("t").Create(ctx, &gbq.TableMetadata{Schema: narrow}); err != nil {
		t.Fatal(err)
	}
	reads := f.bq.TableReads()
	f.publish(out("2", "t", `{"a":"x","b":"z"}`))
	f.waitFor(15*time.Second, "row 2 in the re-created table", func() bool { return ids(f.bq.Rows("proj", "logs", "t")) == "2" && f.acked() == 2 })
	if n := f.bq.TableReads() - reads; n > 20 {
		t.Fatalf("%d table reads to land one row through a 2 s propagation", n)
	}
}

// Keys that keep appearing faster than a schema propagates: rows land
// through the widenings that have propagated, not only once the keys stop.
func TestContinuousWideningLandsRowsAsTheirSchemaPropagates(t *testing.T) {
	f := newFixture(t, bqtest.Options{Propagation: time.Second})
	f.publish(out("base", "w", `{"m":"x"}`))
	f.start()
	f.waitFor(10*time.Second, "the first row", func() bool { return f.acked() == 1 })
	start := time.Now()
	landedWhileWidening := 0
	for i := 0; i < 20; i++ { // a new key every 200 ms for 4 s
		f.publish(out(fmt.Sprint("k", i), "w", fmt.Sprintf(`{"m":"x","k%02d":"v"}`, i)))
		time.Sleep(200 * time.Millisecond)
		landedWhileWidening = len(f.bq.Rows("proj", "logs", "w")) - 1
	}
	if landedWhileWidening < 5 {
		t.Fatalf("%d of 20 rows landed in the %s while new keys kept coming (propagation 1 s)", landedWhileWidening, time.Since(start).Round(time.Second))
	}
	f.waitFor(15*time.Second, "every row", func() bool { return f.acked() == 21 })
	if n := len(f.bq.Rows("proj", "logs", "w")); n != 21 || len(f.dead()) != 0 {
		t.Fatalf("%d rows, %d dead", n, len(f.dead()))
	}
}

// A row waits for its widened schema at most max_schema_wait, then goes
// to the DLQ saying so; the other rows keep flowing.
func TestRowWaitsForItsSchemaAtMostMaxSchemaWait(t *testing.T) {
	f := newFixture(t, bqtest.Options{Propagation: time.Hour})
	f.publish(out("1", "w", `{"m":"x"}`))
	f.start(func(c *Config) { c.MaxSchemaWait = conf.Duration(time.Second) })
	f.waitFor(10*time.Second, "the first row", func() bool { return f.acked() == 1 })
	f.publish(out("2", "w", `{"m":"x","late":"v"}`), out("3", "w", `{"m":"y"}`))
	f.waitFor(10*time.Second, "the batch settled", func() bool { return f.acked() == 2 })
	if got := ids(f.bq.Rows("proj", "logs", "w")); got != "1,3" {
		t.Fatalf("rows: %s", got)
	}
	dead := f.dead()
	if len(dead) != 1 || !strings.Contains(dead[0].Header.Get(batch.HeaderReason), "max_schema_wait") || !strings.Contains(dead[0].Header.Get(batch.HeaderReason), "late") {
		t.Fatalf("DLQ: %d records, want row 2 naming late and max_schema_wait", len(dead))
	}
}

// A row's key that is a column of the table in another case (Host in the
// table, host in the row) is that column, as BigQuery names go.
func TestKeysInAnotherCaseThanTheTableLandInItsColumns(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.start()
	f.publish(out("1", "c", `{"Host":"a","Meta":{"Sub":"x"}}`))
	f.waitFor(10*time.Second, "the first row", func() bool { return f.acked() == 1 })
	f.publish(out("2", "c", `{"host":"b","meta":{"sub":"y"}}`), out("3", "c", `{"HOST":"c"}`))
	f.waitFor(10*time.Second, "the batch settled", func() bool { return f.acked() == 2 })
	if n := len(f.dead()); n != 0 {
		t.Fatalf("%d rows dead-lettered, first: %s", n, f.dead()[0].Header.Get(batch.HeaderReason))
	}
	rows := f.bq.Rows("proj", "logs", "c")
	if len(rows) != 3 || rows[1]["Host"] != "b" || rows[1]["Meta"].(map[string]any)["Sub"] != "y" || rows[2]["Host"] != "c" {
		t.Fatalf("rows: %v", rows)
	}
}

// publishDownBacklog publishes 300 rows of ~1 KB for the table "down", in
// 30 batches of ~10 KB: many times a 64 KiB buffer.
func (f *fixture) publishDownBacklog() {
	pad := strings.Repeat("x", 1000)
	for b := 0; b < 30; b++ {
		var outs []batch.Output
		for i := 0; i < 10; i++ {
			outs = append(outs, out(fmt.Sprint("d", b, "-", i), "down", fmt.Sprintf(`{"pad":%q}`, pad)))
		}
		f.publish(outs...)
	}
}

// An outage of BigQuery, however long, dead-letters nothing: batches wait
// in progress and land once it is back.
func TestOutageOfEveryTableDeadLettersNothing(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.bq.TableDown("logs.down", true)
	f.publishDownBacklog()
	f.start(func(c *Config) {
		c.BatchBytes = 16 << 10
		c.BufferBytes = 64 << 10
		c.AckWait = conf.Duration(time.Second)
	})
	time.Sleep(14 * time.Second) // past 10 deliveries a batch at ack_wait 1s
	f.bq.TableDown("logs.down", false)
	f.waitFor(30*time.Second, "every row once BigQuery is back", func() bool { return f.bq.RowCount("proj", "logs", "down") >= 300 && f.settled() })
	if n := len(f.dead()); n != 0 {
		t.Fatalf("%d records dead-lettered during an outage; first: %s", n, f.dead()[0].Header.Get(batch.HeaderReason))
	}
}

// One table whose appends keep failing takes at most its share of the
// buffer: the others keep receiving every row, also rows that arrive
// while it fails, the sink's health names the table, and however long it
// fails (here past ten deliveries of each of its batches) none of its rows
// is dead-lettered; once it is back they all land.
func TestFailingTableIsIsolated(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.bq.TableDown("logs.down", true)
	f.publishDownBacklog()
	for i := 0; i < 5; i++ {
		f.publish(out(fmt.Sprint("u", i), "up", `{"m":"fine"}`))
	}
	f.start(func(c *Config) {
		c.BatchBytes = 16 << 10
		c.BufferBytes = 64 << 10
		c.AckWait = conf.Duration(time.Second)
	})
	f.waitFor(10*time.Second, "every row of the healthy table", func() bool { return len(f.bq.Rows("proj", "logs", "up")) == 5 })
	if h := f.unhealthy(); !strings.Contains(h, "logs.down") {
		t.Fatalf("health: %q, want the failing table named", h)
	}
	time.Sleep(12 * time.Second) // past 10 deliveries a batch at ack_wait 1s
	for i := 5; i < 10; i++ {
		f.publish(out(fmt.Sprint("u", i), "up", `{"m":"fine"}`))
	}
	f.waitFor(10*time.Second, "the healthy table's rows sent while the other fails", func() bool { return len(f.bq.Rows("proj", "logs", "up")) == 10 })
	if n := len(f.dead()); n != 0 {
		t.Fatalf("%d records dead-lettered while a table was down; first: %s", n, f.dead()[0].Header.Get(batch.HeaderReason))
	}
	info, err := f.q.StreamInfo(context.Background(), queue.StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq <= 40 {
		t.Fatalf("OUT: last sequence %d; want the failing table's batches requeued past their tenth delivery", info.State.LastSeq)
	}
	f.bq.TableDown("logs.down", false)
	f.waitFor(30*time.Second, "every row of the table once it is back", func() bool { return f.bq.RowCount("proj", "logs", "down") >= 300 && f.settled() })
	if n := len(f.dead()); n != 0 {
		t.Fatalf("%d records dead-lettered", n)
	}
	if h := f.unhealthy(); h != "" {
		t.Fatalf("health after recovery: %q", h)
	}
}

// A path listed in json_fields is stored whole as a JSON column: what the
// typed columns change or refuse (nulls inside arrays, an integer past
// 2^53 outside integer_fields, arrays of mixed types or of arrays, a value
// whose type changes from row to row) lands as it was written.
func TestJSONFieldsKeepWhatTypedColumnsCannot(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.start(func(c *Config) { c.JSONFields = []string{"raw", "meta.extra"} })
	f.publish(
		out("1", "j", `{"raw":{"a":[1,null,"x"],"big":9007199254740993,"nest":[[1],[2]]},"meta":{"host":"h","extra":[null]}}`),
		out("2", "j", `{"raw":"now a string","meta":{"extra":{"k":true}}}`),
	)
	f.waitFor(10*time.Second, "both rows", func() bool { return f.acked() == 1 })
	if n := len(f.dead()); n != 0 {
		t.Fatalf("%d rows dead-lettered, first: %s", n, f.dead()[0].Header.Get(batch.HeaderReason))
	}
	rows := f.bq.Rows("proj", "logs", "j")
	if len(rows) != 2 {
		t.Fatalf("rows: %v", rows)
	}
	byID := map[any]map[string]any{rows[0]["id"]: rows[0], rows[1]["id"]: rows[1]}
	if got := byID["1"]["raw"]; got != `{"a":[1,null,"x"],"big":9007199254740993,"nest":[[1],[2]]}` {
		t.Fatalf("row 1 raw: %#v", got)
	}
	if got := byID["2"]["raw"]; got != `"now a string"` {
		t.Fatalf("row 2 raw: %#v", got)
	}
	if got := byID["1"]["meta"].(map[string]any)["extra"]; got != `[null]` {
		t.Fatalf("row 1 meta.extra: %#v", got)
	}
	schema := f.bq.Schema("proj", "logs", "j")
	for _, fs := range schema.Fields {
		if fs.Name == "raw" && fs.Type != "JSON" {
			t.Fatalf("raw is a %s column, want JSON", fs.Type)
		}
	}
}

// Like the Splunk sink, the BigQuery sink exports how long its records
// waited from their fetch at the source to BigQuery's acceptance, and the
// age of the oldest one it holds undelivered.
func TestDeliveryLatencyAndOldestUndelivered(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.bq.TableDown("logs.late", true)
	f.fetched = time.Now().Add(-3 * time.Second)
	f.publish(out("1", "late", `{"m":"x"}`))
	f.start()
	f.waitFor(10*time.Second, "the held batch's age", func() bool { return metricValue(t, f.reg, "sluice_sink_oldest_undelivered_seconds") >= 3 })
	f.bq.TableDown("logs.late", false)
	f.waitFor(20*time.Second, "the row", func() bool { return f.settled() })
	if n, sum := histogram(t, f.reg, "sluice_sink_delivery_latency_seconds"); n != 1 || sum < 3 {
		t.Fatalf("delivery latency: %d observations, sum %.1fs; want 1 of at least 3s", n, sum)
	}
	f.waitFor(5*time.Second, "nothing held", func() bool { return metricValue(t, f.reg, "sluice_sink_oldest_undelivered_seconds") == 0 })
}

// metricValue is the first gauge of name in reg (-1 when absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	if m := firstMetric(t, reg, name); m != nil {
		return m.GetGauge().GetValue()
	}
	return -1
}

// histogram is the first histogram of name in reg: its count and sum.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	if m := firstMetric(t, reg, name); m != nil {
		return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	}
	return 0, -1
}

func firstMetric(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0]
		}
	}
	return nil
}

// A sink whose Run ended (the supervisor restarts an actor on the same
// value) and runs again writes through table writers of its new run:
// those of the first ended with it.
func TestRunAgainWritesThroughNewTableWriters(t *testing.T) {
	f := newFixture(t, bqtest.Options{})
	f.publish(out("a", "audit", `{"m":"first"}`))
	stop := f.start()
	f.waitFor(10*time.Second, "the first row", func() bool { return len(f.bq.Rows("proj", "logs", "audit")) == 1 })
	stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.sink.Run(ctx, &actors.Health{}) }()
	defer func() { cancel(); <-done }()
	f.publish(out("b", "audit", `{"m":"second"}`))
	f.waitFor(10*time.Second, "the second row, after the restart", func() bool { return len(f.bq.Rows("proj", "logs", "audit")) == 2 })
}
