package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

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
