package bigquery

import (
	"math/rand/v2"
	"time"
)

// backoff is the one wait between retries of everything the sink retries
// (preparing a table, opening or reopening its stream, an append, probing
// a widened schema, storing dead rows): it doubles from min up to max and
// each wait is drawn between half and all of it, so writers that failed
// together do not retry together. reset starts again from min.
type backoff struct {
	min, max time.Duration
	n        int
}

func newBackoff(lo, hi time.Duration) *backoff {
	return &backoff{min: lo, max: max(lo, hi)}
}

// next is the wait before the next attempt.
func (b *backoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.n++
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (b *backoff) reset() { b.n = 0 }

// failing says whether the last attempt failed (next was called since reset).
func (b *backoff) failing() bool { return b.n > 0 }
