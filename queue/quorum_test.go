package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeContact is a quorum contact a test moves by hand.
type fakeContact struct {
	mu   sync.Mutex
	last time.Time
	live bool // heard from a quorum right now
}

func (f *fakeContact) read(now time.Time) (time.Time, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live {
		f.last = now
	}
	return f.last, "fake"
}

func (f *fakeContact) set(live bool) {
	f.mu.Lock()
	f.live = live
	f.mu.Unlock()
}

// The watcher pauses once the contact is older than pauseAfter (ending
// the context Open gave), holds Open while paused, and resumes when the
// contact is back.
func TestQuorumWatchPausesWithinBoundAndResumes(t *testing.T) {
	fc := &fakeContact{live: true}
	const pauseAfter = time.Second
	w, err := newQuorumWatch(pauseAfter, fc.read, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := w.Open(context.Background())
	defer cancel()
	time.Sleep(3 * quorumPoll)
	if ctx.Err() != nil || w.State().Paused {
		t.Fatalf("paused with a live quorum: %+v", w.State())
	}
	fc.set(false)
	lost := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(pauseAfter + 5*quorumPoll):
		t.Fatalf("not paused %s after the quorum was lost (pause after %s)", time.Since(lost), pauseAfter)
	}
	took := time.Since(lost)
	if took < pauseAfter-2*quorumPoll {
		t.Errorf("paused after %s, before the grace of %s", took, pauseAfter)
	}
	st := w.State()
	if !st.Paused || w.Ready() == nil || !strings.Contains(w.Ready().Error(), "quorum") {
		t.Fatalf("state %+v, ready %v", st, w.Ready())
	}
	opened := make(chan context.Context)
	go func() {
		c, _ := w.Open(context.Background())
		opened <- c
	}()
	select {
	case <-opened:
		t.Fatal("Open returned while paused")
	case <-time.After(3 * quorumPoll):
	}
	fc.set(true)
	back := time.Now()
	select {
	case c := <-opened:
		if c.Err() != nil {
			t.Fatal("resumed with an ended context")
		}
	case <-time.After(5 * quorumPoll):
		t.Fatalf("not resumed %s after the quorum came back", time.Since(back))
	}
	if w.State().Paused || w.Ready() != nil {
		t.Fatalf("still paused: %+v", w.State())
	}
	t.Logf("paused %s after the quorum was lost, resumed %s after it came back", took.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
}

// Open returns at once with an ended context when its parent ends while
// the node is paused.
func TestQuorumWatchOpenEndsWithParent(t *testing.T) {
	fc := &fakeContact{}
	w, err := newQuorumWatch(time.Millisecond, fc.read, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for !w.State().Paused {
		time.Sleep(quorumPoll)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c, release := w.Open(ctx)
	defer release()
	if c.Err() == nil {
		t.Fatal("Open returned a live context while paused")
	}
}

// A real cluster: the node left alone when its two peers stop pauses
// within the grace, and resumes when one of them is back.
func TestClusterNodeWithoutQuorumPausesAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const pauseAfter = 3 * time.Second
	var mu sync.Mutex
	saved := map[string]Options{}
	qs := startClusterOpts(t, 3, nil, func(o *Options) {
		o.QuorumPauseAfter = pauseAfter
		mu.Lock()
		saved[o.ServerName] = *o
		mu.Unlock()
	})
	w := qs[0].Quorum()
	if w == nil {
		t.Fatal("a cluster node has no quorum watch")
	}
	ctx, release := w.Open(context.Background())
	defer release()
	time.Sleep(2 * time.Second)
	if ctx.Err() != nil {
		t.Fatalf("paused with every peer up: %+v", w.State())
	}
	qs[1].Close()
	qs[2].Close()
	qs[1], qs[2] = nil, nil
	lost := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(pauseAfter + 5*time.Second):
		t.Fatalf("node-1 not paused %s after both peers stopped: %+v", time.Since(lost), w.State())
	}
	took := time.Since(lost)
	if qs[0].ClusterState(context.Background()).Quorum == nil || !qs[0].ClusterState(context.Background()).Quorum.Paused {
		t.Error("cluster state does not say the node is paused")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	back := time.Now()
	q2, err := Start(sctx, saved["node-2"])
	if err != nil {
		t.Fatal(err)
	}
	qs[1] = q2
	opened := make(chan struct{})
	go func() {
		c, r := w.Open(sctx)
		defer r()
		if c.Err() == nil {
			close(opened)
		}
	}()
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatalf("node-1 not resumed 30s after node-2 restarted: %+v", w.State())
	}
	t.Logf("node-1 paused %s after its peers stopped (pause after %s); resumed %s after node-2 was back", took.Round(time.Millisecond), pauseAfter, time.Since(back).Round(time.Millisecond))
}

// An ack on a node cut off from the quorum is not replicated: a plain Ack
// says nothing of it, AckSync fails, so a sink can stop sending before it
// sends what the majority will send again.
func TestClusterAckSyncFailsWithoutQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	qs := startCluster(t, 3)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := qs[0].PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("ack-", i), "r")}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := qs[0].Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>", AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var ds []*Delivery
	// A new consumer's leader is elected a moment after it is made; until
	// then a pull may find no responders (seen once in CI).
	for deadline := time.Now().Add(30 * time.Second); len(ds) < 3; {
		d, err := c.Next(ctx, 5*time.Second)
		if err != nil {
			if time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if err := ds[0].AckSync(ctx); err != nil {
		t.Fatalf("AckSync with every node up: %v", err)
	}
	qs[1].Close()
	qs[2].Close()
	qs[1], qs[2] = nil, nil
	if err := ds[1].Ack(); err != nil {
		t.Fatalf("plain Ack without quorum: %v (it was expected to say nothing)", err)
	}
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := ds[2].AckSync(actx); err == nil {
		t.Fatal("AckSync succeeded on a node without quorum")
	} else {
		t.Logf("AckSync without quorum: %v", err)
	}
}
