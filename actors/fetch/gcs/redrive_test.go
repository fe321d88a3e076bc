package gcs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue/batch"
	"github.com/sluicehq/sluice/rego"
)

// An event policy that cannot answer within the evaluation timeout.
const slowEventPolicy = `package event

slow {
	some i, j
	numbers.range(1, 5000)[i]
	numbers.range(1, 5000)[j]
	i * j == -1
}

src[s] {
	not slow
	s := {"parser": "json", "schema": "github_audit"}
}
`

// A notification that the event policy times out on lands in the DLQ in a
// form that sluice dlq redrive takes; once the policy is fixed, the
// re-drive reads the object and its records reach RAW.
func TestPolicyTimeoutDeadLettersTheNotificationAndRedriveReadsIt(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 256<<20, nil)
	dir := t.TempDir()
	file := filepath.Join(dir, "event.rego")
	if err := os.WriteFile(file, []byte(slowEventPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := rego.Load(dir, rego.Options{EvalTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fx.reg = prometheus.NewRegistry()
	if fx.f, err = New(fx.f.cfg, Deps{Queue: fx.q, Metrics: fx.reg, Policies: eng}); err != nil {
		t.Fatal(err)
	}
	fx.start()
	lines, recs := jsonLines(0, 50)
	upload(t, fx.gs, "github/late.jsonl", lines, "")
	fx.waitNotifications("invalid", 1)
	dlq := fx.dlq()
	if len(dlq) != 1 || !strings.Contains(dlq[0].Header.Get(batch.HeaderReason), "event policy") {
		t.Fatalf("DLQ: %d messages, %v", len(dlq), dlq)
	}

	if err := os.WriteFile(file, []byte(swarmEventPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := ops.New(ctx, ops.Deps{Node: "n1", Queue: fx.q, Registry: prometheus.NewRegistry(), Sources: []ops.Component{{Name: "github", Type: "gcs"}}})
	if err != nil {
		t.Fatal(err)
	}
	plan, job, err := m.Redrive(ctx, ops.DLQFilter{Stage: "fetch"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Count.Records != 1 || job == nil {
		t.Fatalf("re-drive plan: %+v", plan)
	}
	deadline := time.Now().Add(20 * time.Second)
	for job.Status().State == ops.JobRunning && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := job.Status(); st.State != ops.JobDone || st.Done.Records != 1 {
		t.Fatalf("re-drive job: %+v\nlog:\n%s", st, fx.log.String())
	}
	got := fx.waitRecords(len(recs), 20*time.Second)
	for _, r := range recs {
		if got[r] != 1 {
			t.Fatalf("record stored %d times", got[r])
		}
	}
	if dlq := fx.dlq(); len(dlq) != 0 {
		t.Fatalf("DLQ holds %d messages after the re-drive", len(dlq))
	}
}
