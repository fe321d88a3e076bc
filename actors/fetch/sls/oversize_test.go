package sls

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// A record larger than the buffer's largest message goes to the DLQ; the
// rest of its log group and of the shard flows, and the checkpoint moves.
// A log group larger than a message but made of small records is cut to fit.
func TestOversizedRecordGoesToTheDLQAndTheShardFlows(t *testing.T) {
	s := newStandIn(t, 1)
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	// Group 0: seq 0, 1, the oversized 2 (20 KB on the wire, ~120 KB as
	// JSON), 3. Group 1: seq 4..103, ~100 KB of small records.
	g0 := &sdk.LogGroup{Topic: proto.String("audit_log"), Source: proto.String("10.0.0.1"), Logs: []*sdk.Log{
		slstest.AuditLog(r, 0, now), slstest.AuditLog(r, 1, now), slstest.EscapedLog(2, 20000, now), slstest.AuditLog(r, 3, now)}}
	g1 := &sdk.LogGroup{Topic: proto.String("audit_log"), Source: proto.String("10.0.0.1")}
	for seq := 4; seq < 104; seq++ {
		g1.Logs = append(g1.Logs, slstest.AuditLog(r, seq, now))
	}
	q := putAndRead(t, s, queue.Options{DataDir: t.TempDir(), MaxBytes: 64 << 20, MaxPayload: 64 << 10}, g0, g1)

	seqs, _ := subjectRecords(t, q, queue.RawSubject("audit"))
	for seq := 0; seq < 104; seq++ {
		if want := map[bool]int{true: 0, false: 1}[seq == 2]; seqs[strconv.Itoa(seq)] != want {
			t.Errorf("seq %d in RAW %d times, want %d", seq, seqs[strconv.Itoa(seq)], want)
		}
	}
	dc, d := firstDead(t, q)
	h := d.Meta()
	if h.Stage != "fetch" || h.Origin != "raw.audit" || h.Source != "audit" ||
		!strings.HasPrefix(h.RecordID, "sls/audit/proj/audit/0/0") {
		t.Errorf("DLQ meta: %+v", h)
	}
	if reason := h.Reason; !strings.Contains(reason, "65536") || !strings.Contains(reason, "bytes") {
		t.Errorf("reason %q names no size and limit", reason)
	}
	recs, err := batch.Decode(d.Data)
	if err != nil || len(recs) != 1 || !strings.HasPrefix(string(recs[0]), `{"seq":"2"`) {
		t.Errorf("DLQ record: %v, %.40q", err, recs)
	}
	if _, err := dc.Next(context.Background(), 300*time.Millisecond); err == nil {
		t.Error("more than one record in the DLQ")
	}
}

// At the edge: a record that just fits is published in RAW, one byte
// more and it goes to the DLQ, which takes it.
func TestRecordAtTheMessageSizeLimit(t *testing.T) {
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxBytes: 64 << 20, MaxPayload: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	f, err := New(&Config{Name: "audit", Type: "sls", Endpoint: "http://127.0.0.1:1", Project: "proj", Logstore: "audit", ConsumerGroup: "g",
		AccessKeyID: akID, AccessKeySecret: akSecret}, Deps{Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	group := func(n int) []*sdk.LogGroup {
		return []*sdk.LogGroup{{Topic: proto.String("t"), Logs: []*sdk.Log{{Time: proto.Uint32(1), Contents: []*sdk.LogContent{
			{Key: proto.String("blob"), Value: proto.String(strings.Repeat("a", n))}}}}}}
	}
	at := place{first: 7, numbered: true}
	// Grow a blob that fits until its record costs exactly the room left.
	n := 60000
	gs := group(n)
	first, _, _, _, _ := f.messages(0, at, gs, wireLogs(gs))
	if len(first) != 1 {
		t.Fatalf("%d messages for a record of %d", len(first), n)
	}
	recs, _ := batch.Decode(first[0].Body)
	n += recordRoom(f.maxPayload, first[0].Meta, "sls/audit/proj/audit/0/7") - recordCost(recs[0])
	fits := group(n)
	msgs, dead, _, _, _ := f.messages(0, at, fits, wireLogs(fits))
	if len(msgs) != 1 || len(dead) != 0 {
		t.Fatalf("a record at the limit: %d messages, %d dead", len(msgs), len(dead))
	}
	if err := q.Publish(context.Background(), msgs); err != nil {
		t.Fatalf("a record at the limit was refused: %v", err)
	}
	over := group(n + 1)
	msgs, dead, _, _, _ = f.messages(0, at, over, wireLogs(over))
	if len(msgs) != 0 || len(dead) != 1 {
		t.Fatalf("a record one byte over: %d messages, %d dead", len(msgs), len(dead))
	}
	if dead[0].RecordID != "sls/audit/proj/audit/0/7/0" || !strings.Contains(dead[0].Reason, "cursor Nw==") {
		t.Errorf("dead record %s: %s", dead[0].RecordID, dead[0].Reason)
	}
	if err := q.DeadLetter(context.Background(), dead); err != nil {
		t.Fatalf("the DLQ refused the oversized record's start: %v", err)
	}
}

// The DLQ's share of a small buffer can be smaller than one message: an
// oversized record's start must still fit in it, or the shard stalls on
// "buffer full" from the DLQ (found by the chaos run's oversized fault:
// 48 MiB buffer, DLQ 4.8 MiB, a 9 MB record).
func TestOversizedRecordFitsASmallDLQ(t *testing.T) {
	s := newStandIn(t, 1)
	lg := &sdk.LogGroup{Topic: proto.String("audit_log"), Source: proto.String("10.0.0.1"), Logs: []*sdk.Log{slstest.EscapedLog(2, 200000, time.Now())}}
	// The DLQ gets 10 % of 8 MiB: less than the 1 MiB a message may carry.
	q := putAndRead(t, s, queue.Options{DataDir: t.TempDir(), MaxBytes: 8 << 20, MaxPayload: 1 << 20}, lg)
	_, d := firstDead(t, q)
	if recs, err := batch.Decode(d.Data); err != nil || len(recs) != 1 || !strings.HasPrefix(string(recs[0]), `{"seq":"2"`) {
		t.Errorf("DLQ record: %v, %.40q", err, recs)
	}
}

// putAndRead writes groups to shard 0 as a producer would (PutLogs through
// the SDK), then reads them into a queue of opts until the checkpoint is
// past them all.
func putAndRead(t *testing.T, s *slstest.Server, opts queue.Options, groups ...*sdk.LogGroup) *queue.Queue {
	t.Helper()
	putLogs(t, s, groups...)
	q, err := queue.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	run := start(t, q, testConfig(s, nil), "n1")
	waitFor(t, 10*time.Second, fmt.Sprintf("the checkpoint past the %d log groups", len(groups)), func() bool { return s.CheckpointPosition("sluice", 0) == int64(len(groups)) })
	run.stop(t)
	return q
}

// putLogs writes groups as a producer would: PutLogs through the SDK.
func putLogs(t *testing.T, s *slstest.Server, groups ...*sdk.LogGroup) {
	t.Helper()
	c := sdk.CreateNormalInterface(s.Endpoint, akID, akSecret, "")
	c.SetHTTPClient(s.HTTPClient())
	defer c.Close()
	for _, lg := range groups {
		if err := c.PutLogs("proj", "audit", lg); err != nil {
			t.Fatal(err)
		}
	}
}

// firstDead is the first record the fetcher of source audit dead-lettered,
// read through a consumer the test closes.
func firstDead(t *testing.T, q *queue.Queue) (*queue.Consumer, *queue.Delivery) {
	t.Helper()
	dc, err := q.Consumer(context.Background(), queue.ConsumerConfig{Stream: queue.StreamDLQ, Durable: "check", Subject: queue.DLQSubject("fetch", "audit")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dc.Close)
	d, err := dc.Next(context.Background(), time.Second)
	if err != nil {
		t.Fatalf("nothing in the DLQ: %v", err)
	}
	return dc, d
}
