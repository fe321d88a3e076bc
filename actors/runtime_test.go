package actors

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newRuntime(t *testing.T) (*Runtime, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := NewRuntime(slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	r.SetBackoff(Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Reset: time.Minute})
	return r, reg
}

func TestPanickingActorRestartsWithBackoffOthersKeepRunning(t *testing.T) {
	r, _ := newRuntime(t)
	var mu sync.Mutex
	var starts []time.Time
	r.Add(StageTransform, "crasher", ActorFunc(func(ctx context.Context, h *Health) error {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		panic("boom")
	}))
	var ticks atomic.Int64
	r.Add(StageSink, "steady", ActorFunc(func(ctx context.Context, h *Health) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Millisecond):
				ticks.Add(1)
			}
		}
	}))
	r.Start(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(starts)
		mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d starts", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	gaps := []time.Duration{starts[1].Sub(starts[0]), starts[2].Sub(starts[1]), starts[3].Sub(starts[2]), starts[4].Sub(starts[3])}
	mu.Unlock()
	// 20ms, 40ms, 80ms, 160ms with ±20% jitter: each gap at least the floor, and growing.
	for i, g := range gaps {
		floor := time.Duration(float64(20*time.Millisecond<<i) * 0.8)
		if g < floor {
			t.Errorf("restart gap %d = %s, below backoff floor %s", i, g, floor)
		}
	}
	if gaps[3] <= gaps[0] {
		t.Errorf("backoff did not grow: %v", gaps)
	}
	before := ticks.Load()
	time.Sleep(50 * time.Millisecond)
	if ticks.Load() <= before {
		t.Error("the healthy actor stopped while the other one crashed")
	}
	st := r.Statuses()
	var crasher Status
	for _, s := range st {
		if s.Name == "crasher" {
			crasher = s
		}
	}
	if crasher.Restarts < 4 || !strings.Contains(crasher.LastError, "panic: boom") {
		t.Errorf("crasher status = %+v", crasher)
	}
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "crasher") {
		t.Errorf("Ready() = %v, want it to name the crasher", err)
	}
	if err := r.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownOrderFetchTransformSink(t *testing.T) {
	r, _ := newRuntime(t)
	var mu sync.Mutex
	var order []string
	add := func(stage Stage, name string) {
		r.Add(stage, name, ActorFunc(func(ctx context.Context, h *Health) error {
			<-ctx.Done()
			// Simulate draining work, so an unordered stop would interleave.
			time.Sleep(30 * time.Millisecond)
			mu.Lock()
			order = append(order, stage.String())
			mu.Unlock()
			return nil
		}))
	}
	// Added in the reverse order, to show order comes from the stage.
	add(StageSink, "splunk")
	add(StageTransform, "transform")
	add(StageFetch, "sls-a")
	add(StageFetch, "sls-b")
	r.Start(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for r.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v", r.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "fetch,fetch,transform,sink" {
		t.Fatalf("stop order %s", got)
	}
}

func TestUnhealthyActorIsNotReady(t *testing.T) {
	r, reg := newRuntime(t)
	gate := make(chan struct{})
	r.Add(StageSink, "splunk", ActorFunc(func(ctx context.Context, h *Health) error {
		h.SetUnhealthy("HEC refused the token (code 4)")
		<-gate
		h.SetHealthy()
		<-ctx.Done()
		return nil
	}))
	r.Start(context.Background())
	defer r.Stop(time.Second)
	waitUntil(t, func() bool { err := r.Ready(); return err != nil && strings.Contains(err.Error(), "code 4") })
	close(gate)
	waitUntil(t, func() bool { return r.Ready() == nil })
	if v := testutil.ToFloat64(r.up.WithLabelValues("sink", "splunk")); v != 1 {
		t.Fatalf("up = %v", v)
	}
	_ = reg
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
