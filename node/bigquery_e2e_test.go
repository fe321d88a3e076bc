package node_test

import (
	"bufio"
	"context"
	"fmt"

	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/actors/fetch/gcs/gcstest"
	"github.com/sluicehq/sluice/actors/sink/bigquery/bqtest"
	"github.com/sluicehq/sluice/node"
)

// The GCS → BigQuery path through a whole node, with three tables in one
// object: "refused" BigQuery refuses for good (a reserved column name),
// "down" fails every append for a while, "good" is fine. Every row of
// good lands while the others fail; the refused rows, and only they, go
// to the DLQ; once down is back, every one of its rows lands too.
func TestOneTableRefusedAnotherDownAndTheThirdGetsEveryRow(t *testing.T) {
	if testing.Short() {
		t.Skip("a node with GCS, Pub/Sub and BigQuery stand-ins")
	}
	gs, err := gcstest.Start(gcstest.Options{Bucket: "logs"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.Close)
	t.Setenv("STORAGE_EMULATOR_HOST", gs.StorageHost())
	t.Setenv("PUBSUB_EMULATOR_HOST", gs.PubSubHost())
	bq, err := bqtest.NewServer(bqtest.Options{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bq.Close)
	bq.TableDown("t.down", true)

	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	writePolicy(t, policies, "event.rego", `package event
src contains {"parser": "json", "schema": "rows"} if input.data.bucket == "logs"`)
	writePolicy(t, policies, "schema/rows.rego", `package schema.rows
log contains {"dataset": "t", "table": input.table, "id": input.id, "timestamp": 1732480000, "data": object.remove(input, ["table", "id"])}`)
	const perTable = 200
	pad := strings.Repeat("x", 300)
	var object strings.Builder
	for i := 0; i < perTable; i++ {
		fmt.Fprintf(&object, `{"table":"good","id":"g%d","pad":%q}`+"\n", i, pad)
		fmt.Fprintf(&object, `{"table":"down","id":"d%d","pad":%q}`+"\n", i, pad)
		fmt.Fprintf(&object, `{"table":"refused","id":"r%d","_PARTITION_DATE":"x","pad":%q}`+"\n", i, pad)
	}
	ctx := context.Background()
	for o := 0; o < 4; o++ { // four objects, the same rows: the ids make them land once per object
		name := fmt.Sprintf("audit/%d.json", o)
		// The stand-in's bucket announces it on Pub/Sub, as GCS does.
		if _, err := gs.UploadTo(ctx, "logs", name, []byte(strings.ReplaceAll(object.String(), `"id":"`, fmt.Sprintf(`"id":"o%d-`, o))), ""); err != nil {
			t.Fatal(err)
		}
	}

	yaml := fmt.Sprintf(`
node: {name: e2e, data_dir: %q, admin_listen: "127.0.0.1:0"}
queue: {max_bytes: 256MiB}
policies: {dir: %q, watch: false}
transform: {ack_wait: 5s}
sources:
  - {name: gcs, type: gcs, project: sluice-dev, subscription: sluice, lease_period: 10s, max_batch_bytes: 32KiB}
sinks:
  - {name: bq, type: bigquery, project: p, endpoint: %q, write_endpoint: %q, batch_bytes: 16KiB, buffer_bytes: 256KiB, ack_wait: 2s, max_backoff: 500ms}
`, filepath.Join(dir, "data"), policies, bq.URL, bq.GRPCAddr)
	n := runNode(t, yaml, builtin.Registry())

	const rows = 4 * perTable
	waitUntil(t, 60*time.Second, "every row of the good table while another is down and a third refused", func() string {
		if got := bq.RowCount("p", "t", "good"); got < rows {
			return fmt.Sprintf("good has %d of %d rows", got, rows)
		}
		return ""
	})
	if got := bq.RowCount("p", "t", "down"); got != 0 {
		t.Fatalf("the table that is down has %d rows", got)
	}
	time.Sleep(20 * time.Second) // past ten deliveries of the down table's batches at ack_wait 2s
	bq.TableDown("t.down", false)
	waitUntil(t, 60*time.Second, "every row of the table once it is back, the refused ones in the DLQ", func() string {
		down, dead := bq.RowCount("p", "t", "down"), dlqRecords(t, n)
		if down < rows || dead < rows {
			return fmt.Sprintf("down has %d of %d rows, the DLQ %d of %d refused rows", down, rows, dead, rows)
		}
		return ""
	})
	if dead := dlqRecords(t, n); dead != rows {
		t.Fatalf("%d records in the DLQ, want the %d refused ones", dead, rows)
	}
	if got := bq.RowCount("p", "t", "refused"); got != 0 {
		t.Fatalf("the refused table has %d rows", got)
	}
}

// runNode starts a node of the config yaml with the component types of
// types, until the test ends.
func runNode(t *testing.T, yaml string, types *component.Registry) *node.Node {
	t.Helper()
	cfg, err := node.Parse([]byte(yaml), types, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(cfg, node.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-n.Started():
	case err := <-done:
		t.Fatal(err)
	}
	return n
}

func writePolicy(t *testing.T, dir, name, text string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond until it returns "" (done) or within passes; then
// it fails with cond's last word on what is missing.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		missing := cond()
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %s: %s", within, what, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dlqRecords is how many records the node's DLQ holds, from /metrics
// (one a message; a record dead-lettered twice is stored once).
func dlqRecords(t *testing.T, n *node.Node) int {
	t.Helper()
	resp, err := http.Get(n.AdminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, `sluice_stream_messages{stream="DLQ"} `) {
			v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return int(v)
		}
	}
	return 0
}
