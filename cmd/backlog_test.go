package cmd

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// sluice backlog list, move and drop against a node's operations API: a
// sink renamed from splunk2 to splunk left 6 batches.
func TestBacklogCommandsListMoveAndDrop(t *testing.T) {
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), ServerName: "test", MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := ops.New(ctx, ops.Deps{Node: "test", Queue: q, Registry: prometheus.NewRegistry(), Sinks: []ops.Component{{Name: "splunk", Type: "splunk_hec"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); m.Wait(); q.Close() })
	mux := http.NewServeMux()
	m.Mount(func(p string, h http.Handler) { mux.Handle(p, h) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, sink := range []string{"splunk2", "old"} {
		var msgs []*nats.Msg
		for i := 0; i < 6; i++ {
			h := nats.Header{}
			h.Set(batch.HeaderMsgID, fmt.Sprintf("b-%d/%s", i, sink))
			h.Set(batch.HeaderCount, "1")
			msgs = append(msgs, &nats.Msg{Subject: queue.OutSubject(sink), Header: h, Data: batch.Encode([][]byte{[]byte(`{"id":"x","timestamp":1,"data":{}}`)})})
		}
		if err := q.PublishMessages(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
	}

	out, err := runCLI("backlog", "list", "--admin", srv.URL)
	if err != nil || !strings.Contains(out, "out.splunk2") || !strings.Contains(out, "sluice backlog move --from splunk2 --to splunk") {
		t.Fatalf("backlog list: %v\n%s", err, out)
	}
	out, err = runCLI("backlog", "move", "--from", "splunk2", "--to", "splunk", "--admin", srv.URL)
	if err != nil || !strings.Contains(out, "moving 6 records") || !strings.Contains(out, " done: 6 records") {
		t.Fatalf("backlog move: %v\n%s", err, out)
	}
	out, err = runCLI("backlog", "move", "--from", "splunk2", "--to", "splunk", "--admin", srv.URL)
	if err != nil || !strings.Contains(out, "nothing left to move") {
		t.Fatalf("second backlog move: %v\n%s", err, out)
	}
	if _, err = runCLI("backlog", "drop", "--sink", "old", "--admin", srv.URL); err == nil || !strings.Contains(err.Error(), "confirm with --yes") {
		t.Fatalf("drop without --yes off a terminal: %v", err)
	}
	out, err = runCLI("backlog", "drop", "--sink", "old", "--yes", "--admin", srv.URL)
	if err != nil || !strings.Contains(out, "dropped 6 batches of OUT out.old") {
		t.Fatalf("backlog drop: %v\n%s", err, out)
	}
	counts, err := q.SubjectCounts(context.Background(), queue.StreamOut)
	if err != nil || counts["out.splunk"] != 6 || counts["out.splunk2"] != 0 || counts["out.old"] != 0 {
		t.Fatalf("OUT after move and drop: %v, %v", counts, err)
	}
	if out, err := runCLI("backlog", "list", "--admin", srv.URL); err != nil || !strings.Contains(out, "every backlog belongs") {
		t.Fatalf("backlog list at the end: %v\n%s", err, out)
	}
}
