package queue

import "time"

// trimClock is the trimmer's "now": the wall clock, but never ahead of the
// monotonic clock since the trimmer started. A forward step of the system
// clock (a bad NTP server, a VM restored from a snapshot) would otherwise
// make every delivered record look old and empty the replay window in one
// round; records stored after the step carry the stepped store time and
// are merely kept longer. A backward step makes the wall clock the lower
// one, so records are never trimmed earlier than their store time says.
// Only steps while the node runs are caught: one while it is down reads
// as downtime.
type trimClock struct {
	wall       func() time.Time
	anchorWall time.Time // wall reading at the start, without the monotonic part
	anchorMono time.Time // time.Now at the start, with it
}

func newTrimClock(wall func() time.Time) *trimClock {
	return &trimClock{wall: wall, anchorWall: wall().Round(0), anchorMono: time.Now()}
}

func (c *trimClock) now() time.Time {
	w := c.wall().Round(0)
	m := c.anchorWall.Add(time.Since(c.anchorMono))
	if m.Before(w) {
		return m
	}
	return w
}
