package ops_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
)

// A setting that turns a protection off shows in status (those on) and in
// sluice_insecure (every one, 1 when on).
func TestStatusAndMetricsShowInsecureSettings(t *testing.T) {
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), ServerName: "test", MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before the queue closes
	reg := prometheus.NewRegistry()
	m, err := ops.New(ctx, ops.Deps{Node: "test", Queue: q, Registry: reg, Insecure: []ops.InsecureSetting{
		{What: "cluster_routes", Setting: "cluster.insecure", On: true},
		{What: "admin_listener", Setting: "node.admin_tls.insecure"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m.Status(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"insecure":[{"what":"cluster_routes","setting":"cluster.insecure"}]`; !strings.Contains(string(b), want) {
		t.Errorf("status %s\n want %s", b, want)
	}
	want := `# HELP sluice_insecure 1 when the config turns a protection off by name (setting); sluice validate warns about each.
# TYPE sluice_insecure gauge
sluice_insecure{setting="cluster.insecure",what="cluster_routes"} 1
sluice_insecure{setting="node.admin_tls.insecure",what="admin_listener"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_insecure"); err != nil {
		t.Error(err)
	}
}
