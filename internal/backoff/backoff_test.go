package backoff

import (
	"context"
	"testing"
	"time"
)

// Each wait is between half and all of min·2^n, never over max; Reset
// starts again from min.
func TestBackoffDoublesToItsCapWithJitter(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	for round := 0; round < 2; round++ {
		want := 100 * time.Millisecond
		for i := 0; i < 8; i++ {
			d := b.Next()
			if d < want/2 || d > want {
				t.Fatalf("round %d, attempt %d: waited %s, want %s to %s", round, i, d, want/2, want)
			}
			want = min(2*want, time.Second)
		}
		if !b.Failing() || b.Fails() != 8 {
			t.Fatalf("after 8 attempts: failing %v, fails %d", b.Failing(), b.Fails())
		}
		b.Reset()
		if b.Failing() {
			t.Fatal("failing after reset")
		}
	}
}

// A cap below the minimum is the minimum; Wait gives up when ctx ends.
func TestBackoffCapAndWait(t *testing.T) {
	b := New(time.Second, time.Millisecond)
	if d := b.Next(); d < 500*time.Millisecond || d > time.Second {
		t.Fatalf("waited %s, want 500ms to 1s", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait returned true with ctx ended")
	}
	if !New(time.Millisecond, time.Millisecond).Wait(context.Background()) {
		t.Fatal("Wait returned false with ctx alive")
	}
}
