package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testGate is a gate a test opens and closes.
type testGate struct {
	mu     sync.Mutex
	open   bool
	lost   chan struct{}
	opened chan struct{}
}

func newTestGate() *testGate {
	return &testGate{open: true, lost: make(chan struct{}), opened: make(chan struct{})}
}

func (g *testGate) Open(ctx context.Context) (context.Context, context.CancelFunc) {
	for {
		g.mu.Lock()
		open, lost, opened := g.open, g.lost, g.opened
		g.mu.Unlock()
		if !open {
			select {
			case <-opened:
				continue
			case <-ctx.Done():
				return ctx, func() {}
			}
		}
		c, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				cancel()
			case <-c.Done():
			}
		}()
		return c, cancel
	}
}

func (g *testGate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if open == g.open {
		return
	}
	g.open = open
	if open {
		close(g.opened)
		g.lost = make(chan struct{})
	} else {
		close(g.lost)
		g.opened = make(chan struct{})
	}
}

// A gated stage's actors stop (their context ends) when the gate closes,
// show as paused, start again when it opens; other stages never notice.
func TestGatedActorsPauseAndResume(t *testing.T) {
	r, _ := newRuntime(t)
	g := newTestGate()
	r.Gate(g, StageFetch, StageSink)
	var runs, stops atomic.Int64
	running := func(ctx context.Context, h *Health) error {
		runs.Add(1)
		<-ctx.Done()
		stops.Add(1)
		return nil
	}
	r.Add(StageFetch, "source", ActorFunc(running))
	r.Add(StageSink, "sink", ActorFunc(running))
	var transformStops atomic.Int64
	r.Add(StageTransform, "transform", ActorFunc(func(ctx context.Context, h *Health) error {
		<-ctx.Done()
		transformStops.Add(1)
		return nil
	}))
	r.Start(context.Background())
	waitFor(t, "both gated actors to run", func() bool { return runs.Load() == 2 })
	g.set(false)
	waitFor(t, "both gated actors to stop", func() bool { return stops.Load() == 2 })
	waitFor(t, "the gated actors to show as paused", func() bool {
		paused := 0
		for _, s := range r.Statuses() {
			if s.State == StatePaused {
				paused++
			}
		}
		return paused == 2
	})
	if transformStops.Load() != 0 {
		t.Error("the ungated transform stopped")
	}
	time.Sleep(50 * time.Millisecond)
	if runs.Load() != 2 {
		t.Errorf("a gated actor ran while the gate was closed (%d runs)", runs.Load())
	}
	g.set(true)
	waitFor(t, "both gated actors to run again", func() bool { return runs.Load() == 4 })
	for _, s := range r.Statuses() {
		if s.State != StateRunning || s.Restarts != 0 {
			t.Errorf("%s after resuming: %s, %d restarts", s.Name, s.State, s.Restarts)
		}
	}
	if err := r.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
}

// A gated actor that fails on its own (not paused) is restarted as any other.
func TestGatedActorFailureStillRestarts(t *testing.T) {
	r, _ := newRuntime(t)
	r.Gate(newTestGate(), StageFetch)
	var runs atomic.Int64
	r.Add(StageFetch, "flaky", ActorFunc(func(ctx context.Context, h *Health) error {
		if runs.Add(1) == 1 {
			return context.DeadlineExceeded
		}
		<-ctx.Done()
		return nil
	}))
	r.Start(context.Background())
	waitFor(t, "a restart", func() bool { return runs.Load() == 2 })
	if st := r.Statuses()[0]; st.Restarts != 1 {
		t.Errorf("restarts %d, want 1", st.Restarts)
	}
	_ = r.Stop(time.Second)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
