package ops_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
)

// A sink paused for lack of quorum says so in status, not with the last
// error it had before.
func TestStatusSaysASinkIsPaused(t *testing.T) {
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), ServerName: "test", MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m, err := ops.New(ctx, ops.Deps{Node: "test", Queue: q, Registry: prometheus.NewRegistry(),
		Sinks: []ops.Component{{Name: "splunk", Type: "splunk_hec"}},
		Actors: func() []actors.Status {
			return []actors.Status{{Stage: "sink", Name: "sink/splunk", State: actors.StatePaused, LastError: "an old timeout"}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	st := m.Status(ctx)
	if len(st.Sinks) != 1 || st.Sinks[0].Reason != "paused: this node has no JetStream quorum (see CLUSTER)" {
		t.Fatalf("sinks %+v", st.Sinks)
	}
}
