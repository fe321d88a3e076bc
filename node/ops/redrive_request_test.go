package ops_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// A dead-lettered record whose origin is a redrive. subject goes back as a
// request to the stage that answers there (a source re-reading what it
// could not handle), and leaves the DLQ only when that stage says it took
// it; an error answer keeps it.
func TestDLQRedriveToAStageThatAnswersARequest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := queue.Start(ctx, queue.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	m, err := ops.New(ctx, ops.Deps{Node: "n1", Queue: q, Registry: prometheus.NewRegistry(), Sources: []ops.Component{{Name: "bucket", Type: "gcs"}}})
	if err != nil {
		t.Fatal(err)
	}
	dead := []queue.DeadRecord{
		{Stage: "fetch", Name: "bucket", RecordID: "gcs/bucket/b/ok#1/notification", Reason: "event policy: timeout", Origin: "redrive.fetch.bucket", Data: []byte(`{"ok":true}`)},
		{Stage: "fetch", Name: "bucket", RecordID: "gcs/bucket/b/fails#1/notification", Reason: "event policy: timeout", Origin: "redrive.fetch.bucket", Data: []byte(`{"ok":false}`)},
	}
	if err := q.DeadLetter(ctx, dead); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	sub, err := q.Conn().Subscribe("redrive.fetch.bucket", func(msg *nats.Msg) {
		recs, _ := batch.Decode(msg.Data)
		got <- string(recs[0])
		reply := nats.NewMsg(msg.Reply)
		if strings.Contains(string(recs[0]), "false") {
			reply.Header.Set(ops.HeaderRedriveError, "storage unreachable")
		}
		_ = msg.RespondMsg(reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	plan, job, err := m.Redrive(ctx, ops.DLQFilter{Stage: "fetch"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Count.Records != 2 || job == nil {
		t.Fatalf("plan: %+v", plan)
	}
	deadline := time.Now().Add(10 * time.Second)
	for job.Status().State == ops.JobRunning {
		if time.Now().After(deadline) {
			t.Fatalf("job: %+v", job.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != 2 {
		t.Fatalf("the stage got %d requests, want 2", len(got))
	}
	groups, err := m.DLQGroups(ctx, ops.DLQFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Count != 1 {
		t.Fatalf("DLQ after the re-drive: %+v (want the one the stage refused)", groups)
	}
	if st := job.Status(); st.Skipped != 1 || st.Done.Records != 1 {
		t.Fatalf("job: %+v", st)
	}
}
