// Package backoff is the one wait between retries of everything sluice
// retries (a destination's answer, a full stream, a table that is not
// ready, storing dead records, a stream or consumer JetStream is not ready
// to create): it doubles from a
// minimum up to a cap, and each wait is drawn between half and all of
// it, so that workers that failed together do not retry together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff counts failed attempts in a row. Not safe for concurrent use:
// each retry loop has its own.
type Backoff struct {
	min, max time.Duration
	n        int
}

// New starts a backoff at lo, capped at hi (at least lo).
func New(lo, hi time.Duration) *Backoff {
	return &Backoff{min: lo, max: max(lo, hi)}
}

// Next is the wait before the next attempt, and counts a failure.
func (b *Backoff) Next() time.Duration {
	b.n++
	return Nth(b.n, b.min, b.max)
}

// Reset starts again from the minimum, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Failing says whether the last attempt failed (Next was called since Reset).
func (b *Backoff) Failing() bool { return b.n > 0 }

// Fails is how many attempts failed in a row.
func (b *Backoff) Fails() int { return b.n }

// Wait sleeps Next; false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Nth is the wait after the n-th failure in a row (n ≥ 1): lo·2^(n-1)
// capped at hi, drawn between half and all of it.
func Nth(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
