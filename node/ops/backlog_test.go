package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// api calls the manager's /api/v1 routes as the CLI would, as plain JSON.
func (b *bare) api(method, path string, body any) (int, map[string]any, []any) {
	b.t.Helper()
	srv := httptest.NewServer(b.mux())
	defer srv.Close()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, srv.URL+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var obj map[string]any
	var arr []any
	if json.Unmarshal(data, &obj) != nil {
		_ = json.Unmarshal(data, &arr)
	}
	return resp.StatusCode, obj, arr
}

func (b *bare) mux() *http.ServeMux {
	mux := http.NewServeMux()
	b.m.Mount(func(pattern string, h http.Handler) { mux.Handle(pattern, h) })
	return mux
}

// orphanGauge is sluice_orphan_backlog_messages for subject, or -1.
func (b *bare) orphanGauge(subject string) float64 {
	fams, err := b.reg.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "sluice_orphan_backlog_messages" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "subject" && l.GetValue() == subject {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

func (b *bare) subjectMsgs(subject string) uint64 {
	b.t.Helper()
	counts, err := b.q.SubjectCounts(context.Background(), queue.StreamOut)
	if err != nil {
		b.t.Fatal(err)
	}
	return counts[subject]
}

// Issue 35 case 2: a sink renamed from splunk2 to splunk leaves its
// backlog (35 batches held by sink-splunk2). Status and /metrics name it,
// backlog move puts every undelivered batch on out.splunk once (run
// twice, still once), removes the old consumer and purges what it moved;
// backlog drop removes another after confirmation.
func TestRenamedSinkBacklogIsNamedAndMoved(t *testing.T) {
	dir := t.TempDir()
	b := startBare(t, dir, "splunk2", "splunk3")
	ctx := context.Background()
	b.publishOut("splunk2", "old", 40, 100)
	b.deliver("splunk2", 5) // sink-splunk2 delivered 5 before the rename; 35 wait
	b.publishOut("splunk3", "gone", 7, 100)
	b.stop()
	// The restart with splunk2 renamed to splunk and splunk3 removed warns.
	b = startBare(t, dir, "splunk")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.log.String(), "fix=\"sluice backlog move --from splunk2 --to splunk") {
		if time.Now().After(deadline) {
			t.Fatalf("no startup warning naming out.splunk2 and its fix; log:\n%s", b.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, st, _ := b.api("GET", "/api/v1/status", nil)
	orphans, _ := st["orphans"].([]any)
	if code != 200 || len(orphans) != 2 {
		t.Fatalf("status %d names %d orphan backlogs (%v), want splunk2's and splunk3's", code, len(orphans), st["orphans"])
	}
	o := orphans[0].(map[string]any)
	if o["subject"] != "out.splunk2" || o["consumer"] != "sink-splunk2" || o["messages"] != 35.0 || !strings.Contains(o["fix"].(string), "sluice backlog move --from splunk2 --to splunk") {
		t.Fatalf("orphan %v: want out.splunk2, sink-splunk2, 35 messages and the command that moves it", o)
	}
	if g := b.orphanGauge("out.splunk2"); g != 35 {
		t.Fatalf("sluice_orphan_backlog_messages{subject=out.splunk2} = %v, want 35", g)
	}

	code, res, _ := b.api("POST", "/api/v1/backlog/move", map[string]any{"from": "splunk2", "to": "nope"})
	if code != 409 || !strings.Contains(res["error"].(string), `"nope" is not configured`) {
		t.Fatalf("move to an unconfigured sink: %d %v", code, res)
	}
	for run := 1; run <= 2; run++ {
		code, res, _ = b.api("POST", "/api/v1/backlog/move", map[string]any{"from": "splunk2", "to": "splunk"})
		if run == 1 {
			job, _ := res["job"].(map[string]any)
			if code != 202 || job == nil {
				t.Fatalf("move: %d %v, want a job", code, res)
			}
			if st := b.waitJob(job["id"].(string)); st.State != "done" || st.Done.Records != 35 {
				t.Fatalf("move job %+v, want done with 35 records", st)
			}
		} else if code != 200 || res["job"] != nil {
			t.Fatalf("second move: %d %v, want nothing left to move", code, res)
		}
		if n := b.subjectMsgs("out.splunk"); n != 35 {
			t.Fatalf("after move %d out.splunk holds %d, want the 35 undelivered once", run, n)
		}
		if n := b.subjectMsgs("out.splunk2"); n != 0 {
			t.Fatalf("after move %d out.splunk2 still holds %d", run, n)
		}
	}
	if _, err := b.q.JetStream().Consumer(ctx, queue.StreamOut, "sink-splunk2"); err == nil {
		t.Fatal("sink-splunk2 still exists after the move")
	}
	first, err := b.q.GetStored(ctx, queue.StreamOut, 48) // 40 old + 7 gone, then the moved ones
	if err != nil {
		t.Fatal(err)
	}
	if id := first.Header.Get(batch.HeaderMsgID); id != "move/splunk/old-5/splunk2" || first.Header.Get(batch.HeaderSink) != "splunk" {
		t.Fatalf("first moved batch: ID %q, sink %q", id, first.Header.Get(batch.HeaderSink))
	}

	if code, res, _ := b.api("POST", "/api/v1/backlog/drop", map[string]any{"sink": "splunk3"}); code != 400 {
		t.Fatalf("drop without confirm: %d %v", code, res)
	}
	code, res, _ = b.api("POST", "/api/v1/backlog/drop", map[string]any{"sink": "splunk3", "confirm": true})
	if code != 200 || res["messages"] != 7.0 || b.subjectMsgs("out.splunk3") != 0 {
		t.Fatalf("drop: %d %v, out.splunk3 holds %d", code, res, b.subjectMsgs("out.splunk3"))
	}
	if code, res, _ := b.api("POST", "/api/v1/backlog/drop", map[string]any{"sink": "splunk", "confirm": true}); code != 409 {
		t.Fatalf("drop of a configured sink: %d %v, want a refusal", code, res)
	}
	_, st, _ = b.api("GET", "/api/v1/status", nil)
	if st["orphans"] != nil || b.orphanGauge("out.splunk2") != -1 {
		t.Fatalf("orphans after move and drop: %v", st["orphans"])
	}
}

// The chaos run's sink-rename: Splunk was down, so the old sink's backlog
// is all OUT holds, up to its limit. The move must still finish: it needs
// room in OUT for its copies, and nothing else makes room (the backlog is
// undelivered, so the trimmer keeps it). Before, it waited "the buffer is
// full" forever.
func TestMoveFinishesWhenTheBacklogFillsOUT(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 24 << 20 // OUT: 60 %, 14.4 MiB
	b := startBareSized(t, dir, maxBytes, "splunk")
	ctx := context.Background()
	n := 0
	for ; ; n++ { // fill OUT with undelivered batches of ~100 KB
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprintf("old-%d/splunk", n))
		h.Set(batch.HeaderCount, "1")
		rec := fmt.Appendf(nil, `{"id":"old-%d","timestamp":1,"data":{"pad":%q}}`, n, strings.Repeat("x", 100<<10))
		err := b.q.PublishMessages(ctx, []*nats.Msg{{Subject: queue.OutSubject("splunk"), Header: h, Data: batch.Encode([][]byte{rec})}})
		if errors.Is(err, queue.ErrBufferFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	b.deliver("splunk", 0) // the sink's consumer exists, as it did before the rename
	b.stop()
	b = startBareSized(t, dir, maxBytes, "splunk-r1")
	code, res, _ := b.api("POST", "/api/v1/backlog/move", map[string]any{"from": "splunk", "to": "splunk-r1"})
	job, _ := res["job"].(map[string]any)
	if code != 202 || job == nil {
		t.Fatalf("move: %d %v, want a job", code, res)
	}
	if st := b.waitJob(job["id"].(string)); st.State != "done" {
		t.Fatalf("the move of %d batches that fill OUT ended %+v, want done", n, st)
	}
	if got := b.subjectMsgs("out.splunk-r1"); got != uint64(n) {
		t.Fatalf("out.splunk-r1 holds %d batches, want the %d moved", got, n)
	}
	if got := b.subjectMsgs("out.splunk"); got != 0 {
		t.Fatalf("out.splunk still holds %d batches", got)
	}
	b.stop()
	// And the node starts again with what the move left in OUT.
	startBareSized(t, dir, maxBytes, "splunk-r1")
}
