package sls

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/queue"
)

// A pull RAW took only part of (the rest refused as full) is pulled again
// until it fits; what RAW stored the first time is not published again: a
// full buffer can last longer than duplicate_window, and past it the same
// log group would be stored twice, once per retry.
func TestRetriedPullPublishesOnlyWhatWasNotStored(t *testing.T) {
	s := newStandIn(t, 1)
	r := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	var groups []*sdk.LogGroup
	for g := 0; g < 2; g++ { // ~100 KB each; RAW holds one
		lg := &sdk.LogGroup{Topic: proto.String("audit_log"), Source: proto.String("10.0.0.1")}
		for i := 0; i < 100; i++ {
			lg.Logs = append(lg.Logs, slstest.AuditLog(r, g*100+i, now))
		}
		groups = append(groups, lg)
	}
	putLogs(t, s, groups...)
	reg := prometheus.NewRegistry()
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxBytes: 600 << 10, DuplicateWindow: 100 * time.Millisecond, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	run := start(t, q, testConfig(s, nil), "n1")
	waitFor(t, 10*time.Second, "RAW refusing the pull's second log group", func() bool { return strings.Contains(run.log.String(), "the pull will be retried") })
	time.Sleep(500 * time.Millisecond) // past the duplicate window
	// The transform took the first log group and the trimmer removed it.
	raw, err := q.JetStream().Stream(context.Background(), queue.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the checkpoint past both log groups", func() bool { return s.CheckpointPosition("sluice", 0) == 2 })
	run.stop(t)
	if n := gathered(t, reg, "sluice_queue_published_messages_total"); n != 2 {
		t.Errorf("RAW stored %v messages for 2 log groups: a log group stored before the retry was stored again", n)
	}
}

// gathered is the sum of a counter's series in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// While RAW stays full, each shard tries again ever more slowly (up to
// 5 s), not every quarter second: every try sends the whole pull through
// the node's connection, which the transform and the sinks share.
func TestFullRAWRetriesBackOff(t *testing.T) {
	s := newStandIn(t, 1)
	r := rand.New(rand.NewPCG(5, 6))
	lg := &sdk.LogGroup{Topic: proto.String("audit_log"), Source: proto.String("10.0.0.1")}
	for i := 0; i < 300; i++ { // ~300 KB: more than RAW holds
		lg.Logs = append(lg.Logs, slstest.AuditLog(r, i, time.Now()))
	}
	putLogs(t, s, lg)
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxBytes: 600 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	reg := prometheus.NewRegistry()
	f, err := New(testConfig(s, func(c *Config) { c.MaxBatchBytes = 64 << 10 }), Deps{Queue: q, Metrics: reg, NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := actors.NewRuntime(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	rt.Add(actors.StageFetch, "sls/audit", f)
	rt.Start(context.Background())
	time.Sleep(6 * time.Second)
	rt.Stop(20 * time.Second)
	// A try every 250 ms makes ~24 in 6 s; backing off from 200 ms to 5 s, under 8.
	if n := gathered(t, reg, "sluice_sls_publish_errors_total"); n > 8 || n < 1 {
		t.Errorf("%v tries of a pull RAW cannot hold in 6 s, want 1 to 8", n)
	}
}
