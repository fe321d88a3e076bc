package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/node/nodetest"
	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// pipeline is a node with the real transform and Splunk sink against the
// HEC stand-in; the test plays the source by publishing RAW batches.
type pipeline struct {
	t        *testing.T
	n        *node.Node
	hec      *hectest.Server
	c        *ops.Client
	policies string
	next     int
}

// adminToken is the pipeline's: without one the admin API is read-only.
const adminToken = "ops-test-admin-token"

func startPipeline(t *testing.T, retain string) *pipeline {
	t.Helper()
	hec, err := hectest.NewServer(hectest.Options{Token: "test-token"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hec.Close)
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	if err := os.CopyFS(policies, os.DirFS("../../testdata/policies")); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`
node: {name: test, data_dir: %q, admin_listen: "127.0.0.1:0", admin_token: %s}
queue: {max_bytes: 256MiB, retain_delivered: %s, duplicate_window: %s}
policies: {dir: %q, watch: false}
sinks:
  - {name: splunk, type: splunk_hec, url: %q, token: test-token, linger: 20ms, max_backoff: 200ms, paused_retry: 300ms}
`, filepath.Join(dir, "data"), adminToken, retain, dupWindow(t, retain), policies, hec.URL)
	cfg, err := node.Parse([]byte(yaml), builtin.Registry(), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n := nodetest.Start(t, cfg, node.Options{Logger: log})
	return &pipeline{t: t, n: n, hec: hec, c: ops.NewClient(n.AdminAddr(), adminToken), policies: policies}
}

// dupWindow is the duplicate window a test with this replay window may
// have: validate wants retain_delivered at least as long.
func dupWindow(t *testing.T, retain string) time.Duration {
	d, err := time.ParseDuration(retain)
	if err != nil {
		t.Fatal(err)
	}
	return min(d, 10*time.Minute)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// publish plays the source: count records in batches of 10 to RAW, with
// the github_splunk schema; bad ones carry "bad":true. It returns their seqs.
func (p *pipeline) publish(count int, bad func(seq int) bool) []int {
	p.t.Helper()
	var seqs []int
	var msgs []*nats.Msg
	for len(seqs) < count {
		var recs [][]byte
		for len(recs) < 10 && len(seqs) < count {
			p.next++
			isBad := bad != nil && bad(p.next)
			recs = append(recs, fmt.Appendf(nil, `{"@timestamp":%d,"action":"repo.create","seq":%d,"bad":%t}`, time.Now().UnixMilli(), p.next, isBad))
			seqs = append(seqs, p.next)
		}
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprintf("test/%d", p.next))
		h.Set(batch.HeaderSource, "github")
		h.Set(batch.HeaderSchema, "github_splunk")
		h.Set(batch.HeaderCount, fmt.Sprint(len(recs)))
		msgs = append(msgs, &nats.Msg{Subject: queue.RawSubject("github"), Header: h, Data: batch.Encode(recs)})
	}
	if err := p.n.Queue.PublishMessages(context.Background(), msgs); err != nil {
		p.t.Fatal(err)
	}
	return seqs
}

// event is what the test reads back from an accepted HEC event.
type event struct {
	Seq        int
	Replay     string
	Sourcetype string
}

func parseEvent(t *testing.T, e hectest.Event) event {
	var v struct {
		Sourcetype string `json:"sourcetype"`
		Event      struct {
			Seq int `json:"seq"`
		} `json:"event"`
		Fields map[string]any `json:"fields"`
	}
	if err := json.Unmarshal(e.Raw, &v); err != nil {
		t.Fatalf("HEC event %s: %v", e.Raw, err)
	}
	replay, _ := v.Fields["sluice_replay"].(string)
	return event{Seq: v.Event.Seq, Replay: replay, Sourcetype: v.Sourcetype}
}

func (p *pipeline) events() []event {
	var out []event
	for _, e := range p.hec.Accepted() {
		out = append(out, parseEvent(p.t, e))
	}
	return out
}

// seqsWhere is the sorted seqs of the accepted events for which f is true.
func (p *pipeline) seqsWhere(f func(event) bool) []int {
	var out []int
	for _, e := range p.events() {
		if f(e) {
			out = append(out, e.Seq)
		}
	}
	slices.Sort(out)
	return out
}

func (p *pipeline) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			st, _ := p.c.Status(context.Background())
			b, _ := json.MarshalIndent(st, "", "  ")
			p.t.Fatalf("timed out waiting for %s; status:\n%s", what, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *pipeline) waitAccepted(n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d events accepted (have %d)", n, p.hec.Count()), func() bool { return p.hec.Count() >= n })
}

func (p *pipeline) waitJob(id string) *ops.JobStatus {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := p.c.WaitJob(ctx, id, 20*time.Millisecond, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if j.State != ops.JobDone {
		p.t.Fatalf("job %s ended %s: %s", id, j.State, j.Error)
	}
	return j
}

func TestReplayPutsBackExactlyTheLostWindowThenReTransformsIt(t *testing.T) {
	p := startPipeline(t, "1h")
	ctx := context.Background()
	p.publish(100, nil)
	p.waitAccepted(100)
	time.Sleep(50 * time.Millisecond)
	from := time.Now()
	lost := p.publish(100, nil)
	p.waitAccepted(200)
	time.Sleep(50 * time.Millisecond)
	to := time.Now()
	p.publish(100, nil)
	p.waitAccepted(300)

	// The SIEM loses the middle window.
	if n := p.hec.Forget(func(e hectest.Event) bool { s := parseEvent(t, e).Seq; return s > 100 && s <= 200 }); n != 100 {
		t.Fatalf("forgot %d events, want 100", n)
	}

	dry, err := p.c.Replay(ctx, ops.ReplayRequest{Sink: "splunk", From: from, To: to, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Job != nil || dry.Plan.Records != 100 || dry.Plan.Bytes == 0 {
		t.Fatalf("dry run: %+v, want 100 records, some bytes and no job", dry)
	}
	if got := p.hec.Count(); got != 200 {
		t.Fatalf("a dry run sent something: %d events, want 200", got)
	}

	res, err := p.c.Replay(ctx, ops.ReplayRequest{Sink: "splunk", From: from, To: to, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	job := p.waitJob(res.Job.ID)
	if job.Done.Records != 100 {
		t.Fatalf("replay sent %d records, want 100", job.Done.Records)
	}
	p.waitAccepted(300)
	time.Sleep(300 * time.Millisecond) // anything extra would arrive now
	replayed := p.seqsWhere(func(e event) bool { return e.Replay == job.ID })
	if !slices.Equal(replayed, lost) {
		t.Fatalf("replayed seqs %v\nwant exactly the lost window %v", replayed, lost)
	}
	if n := len(p.events()); n != 300 {
		t.Fatalf("%d events after the replay, want 300 (nothing outside the window)", n)
	}

	// A policy fix, then the same window through the transform again.
	path := filepath.Join(p.policies, "schema", "github_splunk.rego")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.Replace(string(src), `"sourcetype": "github:audit"`, `"sourcetype": "github:audit:v2"`, 1)
	if fixed == string(src) {
		t.Fatal("policy fixture changed: no sourcetype to replace")
	}
	if err := os.WriteFile(path, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.n.Policies.Reload(); err != nil {
		t.Fatal(err)
	}
	res, err = p.c.Replay(ctx, ops.ReplayRequest{Sink: "splunk", From: from, To: to, ThroughTransform: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Stream != queue.StreamRaw || res.Plan.Records != 100 {
		t.Fatalf("through-transform plan %+v, want 100 RAW records", res.Plan)
	}
	job2 := p.waitJob(res.Job.ID)
	p.waitAccepted(400)
	time.Sleep(300 * time.Millisecond)
	again := p.seqsWhere(func(e event) bool { return e.Replay == job2.ID && e.Sourcetype == "github:audit:v2" })
	if !slices.Equal(again, lost) {
		t.Fatalf("re-transformed seqs %v\nwant the window %v", again, lost)
	}
	if n := len(p.events()); n != 400 {
		t.Fatalf("%d events, want 400", n)
	}

	jobs, err := p.c.Jobs(ctx)
	if err != nil || len(jobs) != 2 || jobs[0].ID != job2.ID {
		t.Fatalf("jobs %+v, %v: want the two replays, newest first", jobs, err)
	}
}

func TestReplayPastTheRetainedWindowSaysWhatIsGone(t *testing.T) {
	p := startPipeline(t, "1s")
	ctx := context.Background()
	from := time.Now().Add(-time.Minute)
	p.publish(50, nil)
	p.waitAccepted(50)
	time.Sleep(1500 * time.Millisecond) // delivered and older than retain_delivered
	if err := p.n.Queue.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	kept := time.Now()
	p.publish(10, nil)
	p.waitAccepted(60)

	_, err := p.c.Replay(ctx, ops.ReplayRequest{Sink: "splunk", From: from, To: time.Now()})
	var apiErr *ops.APIError
	if err == nil || !errorsAs(err, &apiErr) || apiErr.Code != 409 {
		t.Fatalf("replay past the retained window: %v, want a 409 refusal", err)
	}
	for _, want := range []string{"part of the window is gone", from.UTC().Format(time.RFC3339), "retain_delivered", "--from"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	_, err = p.c.Replay(ctx, ops.ReplayRequest{Sink: "splunk", From: from, To: from.Add(30 * time.Second)})
	if err == nil || !strings.Contains(err.Error(), "whole window") {
		t.Fatalf("a fully trimmed window: %v, want 'the whole window … is gone'", err)
	}
	// What is retained can still be replayed, throttled by --rate: 10
	// records at 5 per second, a burst of 5 first, take about a second.
	res, err := p.c.Replay(ctx, ops.ReplayRequest{Sink: "splunk", From: kept, To: time.Now(), Rate: 5})
	if err != nil || res.Plan.Records != 10 {
		t.Fatalf("retained part: %+v, %v; want 10 records", res, err)
	}
	j := p.waitJob(res.Job.ID)
	if took := j.Finished.Sub(j.Started); took < 800*time.Millisecond {
		t.Errorf("10 records at --rate 5 took %s, want about 1s", took)
	}
	p.waitAccepted(70)
	if _, err := p.c.Replay(ctx, ops.ReplayRequest{Sink: "nope", From: kept, To: time.Now()}); err == nil || !strings.Contains(err.Error(), `sink "nope" is not configured`) {
		t.Fatalf("unknown sink: %v", err)
	}
}

func TestDLQRedriveAfterTheFixDeliversEachRecordOnce(t *testing.T) {
	p := startPipeline(t, "1h")
	ctx := context.Background()
	isBad := func(raw json.RawMessage) bool { return strings.Contains(string(raw), `"bad":true`) }
	p.hec.Refuse(isBad)
	seqs := p.publish(60, func(seq int) bool { return seq%6 == 0 })
	p.waitAccepted(50)
	var groups []ops.DLQGroup
	p.waitFor("10 records in the DLQ", func() bool {
		var err error
		groups, err = p.c.DLQGroups(ctx, ops.DLQFilter{})
		return err == nil && len(groups) == 1 && groups[0].Count == 10
	})
	if g := groups[0]; g.Stage != "sink" || g.Name != "splunk" || !strings.Contains(g.Reason, "Invalid data format") {
		t.Fatalf("DLQ group %+v", g)
	}
	e, err := p.c.DLQShow(ctx, groups[0].Example)
	var rec struct {
		Data struct {
			Bad bool `json:"bad"`
		} `json:"data"`
	}
	if err != nil || e.Attempts != 1 || json.Unmarshal(e.Record, &rec) != nil || !rec.Data.Bad || e.Origin != "out.splunk" {
		t.Fatalf("dlq show: %+v, %v", e, err)
	}

	// Re-driven before the fix: every record fails again and comes back
	// with one more attempt; none is lost.
	res, err := p.c.Redrive(ctx, ops.DLQFilter{Stage: "sink"}, false)
	if err != nil {
		t.Fatal(err)
	}
	p.waitJob(res.Job.ID)
	p.waitFor("the 10 records back in the DLQ with attempt 2", func() bool {
		groups, err := p.c.DLQGroups(ctx, ops.DLQFilter{})
		if err != nil || len(groups) != 1 || groups[0].Count != 10 {
			return false
		}
		e, err := p.c.DLQShow(ctx, groups[0].Example)
		return err == nil && e.Attempts == 2
	})

	// The fix, then the re-drive: each record once, and the DLQ empty.
	p.hec.Refuse(nil)
	res, err = p.c.Redrive(ctx, ops.DLQFilter{Stage: "sink", Reason: "Invalid data"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Count.Records != 10 {
		t.Fatalf("re-drive plan %+v, want 10 records", res.Plan)
	}
	p.waitJob(res.Job.ID)
	p.waitAccepted(60)
	time.Sleep(300 * time.Millisecond)
	got := p.seqsWhere(func(event) bool { return true })
	if !slices.Equal(got, seqs) {
		t.Fatalf("delivered seqs %v\nwant each of %v once", got, seqs)
	}
	groups, err = p.c.DLQGroups(ctx, ops.DLQFilter{})
	if err != nil || len(groups) != 0 {
		t.Fatalf("DLQ after the re-drive: %+v, %v; want empty", groups, err)
	}
}

func TestDLQPurgeNeedsConfirmationAndFilters(t *testing.T) {
	p := startPipeline(t, "1h")
	ctx := context.Background()
	p.hec.Refuse(func(raw json.RawMessage) bool { return strings.Contains(string(raw), `"bad":true`) })
	p.publish(20, func(int) bool { return true })
	p.waitFor("20 records in the DLQ", func() bool {
		g, err := p.c.DLQGroups(ctx, ops.DLQFilter{})
		return err == nil && len(g) == 1 && g[0].Count == 20
	})
	if n, err := p.c.PurgeDLQ(ctx, ops.DLQFilter{Stage: "transform"}); err != nil || n != 0 {
		t.Fatalf("purge of another stage: %d, %v; want 0", n, err)
	}
	if n, err := p.c.PurgeDLQ(ctx, ops.DLQFilter{}); err != nil || n != 20 {
		t.Fatalf("purge: %d, %v; want 20", n, err)
	}
	if g, _ := p.c.DLQGroups(ctx, ops.DLQFilter{}); len(g) != 0 {
		t.Fatalf("DLQ after purge: %+v", g)
	}
}

func TestStatusReportsSinkStateFillAndOldestUndelivered(t *testing.T) {
	p := startPipeline(t, "1h")
	ctx := context.Background()
	p.publish(10, nil)
	p.waitAccepted(10)
	p.hec.Down()
	p.publish(30, nil)
	var st *ops.Status
	p.waitFor("the sink retrying with records waiting", func() bool {
		var err error
		st, err = p.c.Status(ctx)
		return err == nil && len(st.Sinks) == 1 && st.Sinks[0].State == "retrying" && outConsumer(st).OldestUndeliveredSeconds > 0.2
	})
	if s := st.Sinks[0]; s.Name != "splunk" || s.Events != 10 || s.OldestUndeliveredSeconds <= 0 {
		t.Fatalf("sink status %+v", s)
	}
	for _, s := range st.Streams {
		if s.Name == queue.StreamOut && (s.FillPercent <= 0 || s.Messages == 0 || s.MaxBytes <= 0) {
			t.Fatalf("OUT stream %+v: want messages and a fill above 0", s)
		}
	}
	if c := outConsumer(st); c.Pending+uint64(c.AckPending) == 0 {
		t.Fatalf("OUT consumer %+v: want records waiting", c)
	}
	if st.Policies == nil || st.Policies.Version == "" {
		t.Fatalf("policies %+v", st.Policies)
	}
	if err := p.hec.Up(); err != nil {
		t.Fatal(err)
	}
	p.waitAccepted(40)
	p.waitFor("the sink up and caught up", func() bool {
		st, err := p.c.Status(ctx)
		return err == nil && st.Sinks[0].State == "up" && outConsumer(st).OldestUndeliveredSeconds == 0
	})
}

func outConsumer(st *ops.Status) ops.ConsumerStatus {
	for _, s := range st.Streams {
		for _, c := range s.Consumers {
			if s.Name == queue.StreamOut && c.Name == "sink-splunk" {
				return c
			}
		}
	}
	return ops.ConsumerStatus{}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// A policy bug dead-letters records at the transform; after the fix, a
// re-drive runs them through the fixed policy to the sink, each once.
func TestDLQRedriveAfterAPolicyFix(t *testing.T) {
	p := startPipeline(t, "1h")
	ctx := context.Background()
	path := filepath.Join(p.policies, "schema", "github_splunk.rego")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	buggy := string(good) + `
log contains {"timestamp": 1, "data": input, "sink": "splunk-typo"} if input.bad
`
	if err := os.WriteFile(path, []byte(buggy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.n.Policies.Reload(); err != nil {
		t.Fatal(err)
	}
	seqs := p.publish(40, func(seq int) bool { return seq%4 == 0 })
	p.waitAccepted(30)
	var groups []ops.DLQGroup
	p.waitFor("10 records dead-lettered by the transform", func() bool {
		groups, err = p.c.DLQGroups(ctx, ops.DLQFilter{Stage: "transform"})
		return err == nil && len(groups) == 1 && groups[0].Count == 10
	})
	if !strings.Contains(groups[0].Reason, `no sink named "splunk-typo"`) || strings.Contains(groups[0].Reason, "test/") {
		t.Fatalf("reason %q: want the policy's error with the record ID taken out", groups[0].Reason)
	}

	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.n.Policies.Reload(); err != nil {
		t.Fatal(err)
	}
	res, err := p.c.Redrive(ctx, ops.DLQFilter{Stage: "transform"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if j := p.waitJob(res.Job.ID); j.Done.Records != 10 {
		t.Fatalf("re-drive sent %d records, want 10", j.Done.Records)
	}
	p.waitAccepted(40)
	time.Sleep(300 * time.Millisecond)
	if got := p.seqsWhere(func(event) bool { return true }); !slices.Equal(got, seqs) {
		t.Fatalf("delivered seqs %v\nwant each of %v once", got, seqs)
	}
	if g, err := p.c.DLQGroups(ctx, ops.DLQFilter{}); err != nil || len(g) != 0 {
		t.Fatalf("DLQ after the re-drive: %+v, %v", g, err)
	}
}
