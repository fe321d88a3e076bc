package gcs

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
)

// runChild is the process that gets SIGKILLed: a queue and a fetcher over
// the data directory, talking to the parent's stand-ins.
func runChild(dir string) {
	q, err := queue.Start(context.Background(), queue.Options{DataDir: dir, MaxBytes: 256 << 20})
	if err != nil {
		panic(err)
	}
	cfg := &Config{Name: "github", Type: "gcs", Project: os.Getenv("SLUICE_GCS_PROJECT"), Subscription: os.Getenv("SLUICE_GCS_SUB"), Schema: "github_audit", MaxBatchBytes: 32 << 10,
		LeasePeriod: conf.Duration(10 * time.Second)}
	f, err := New(cfg, Deps{Queue: q})
	if err != nil {
		panic(err)
	}
	rt, err := actors.NewRuntime(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	rt.Add(actors.StageFetch, "gcs/github", f)
	rt.Start(context.Background())
	select {}
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// A SIGKILL between publishing an object's records and acking its
// notification: Pub/Sub redelivers, the object is read again, and RAW
// still holds every record exactly once.
func TestSIGKILLBetweenPublishAndAckStoresEachRecordOnce(t *testing.T) {
	if dir := os.Getenv("SLUICE_GCS_CHILD"); dir != "" {
		runChild(dir)
		return
	}
	gs := newStandIn(t)
	lines, recs := jsonLines(0, 20000)
	upload(t, gs, "github/big.json.gz", gzipped(lines), "")
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLBetweenPublishAndAckStoresEachRecordOnce$")
	cmd.Env = append(os.Environ(), "SLUICE_GCS_CHILD="+dir, "SLUICE_GCS_PROJECT="+gs.Options().Project, "SLUICE_GCS_SUB="+gs.Options().Subscription)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "jetstream")
	deadline := time.Now().Add(60 * time.Second)
	for dirSize(raw) < 2<<20 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the child stored nothing within 60s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	fx := newFixtureWith(t, gs, dir, 256<<20, func(c *Config) { c.Schema = "github_audit"; c.MaxBatchBytes = 32 << 10 })
	before := 0
	for _, c := range fx.rawRecords() {
		before += c
	}
	if before >= len(recs) {
		t.Skipf("the child stored all %d records before it could be killed", before)
	}
	fx.start()
	got := fx.waitRecords(len(recs), 60*time.Second)
	for _, r := range recs {
		if got[r] != 1 {
			t.Fatalf("record stored %d times across the kill (%d stored before it)", got[r], before)
		}
	}
	fx.waitNotifications("acked", 1)
	t.Logf("killed with %d of %d records in RAW; after the restart each is there once", before, len(recs))
}
