package bigquery

import (
	"testing"
	"time"
)

// Each wait is between half and all of min·2^n, never over max; reset
// starts again from min.
func TestBackoffDoublesToItsCapWithJitter(t *testing.T) {
	b := newBackoff(100*time.Millisecond, time.Second)
	for round := 0; round < 2; round++ {
		want := 100 * time.Millisecond
		for i := 0; i < 8; i++ {
			d := b.next()
			if d < want/2 || d > want {
				t.Fatalf("round %d, attempt %d: waited %s, want %s to %s", round, i, d, want/2, want)
			}
			want = min(2*want, time.Second)
		}
		if !b.failing() {
			t.Fatal("not failing after attempts")
		}
		b.reset()
		if b.failing() {
			t.Fatal("failing after reset")
		}
	}
}
