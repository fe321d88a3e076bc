package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// fillDelivered fills RAW past the trimmer's high-water mark with records
// the transform has acked, and returns how many it stored.
func fillDelivered(t *testing.T, q *Queue) int {
	t.Helper()
	ctx := context.Background()
	big := strings.Repeat("x", 64<<10)
	stored := 0
	for ; ; stored++ {
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("id-", stored), big)}); err != nil {
			break
		}
	}
	deliverAll(t, q, stored)
	return stored
}

// Issue 35 case 5: nats-server rebuilds its duplicate table on restart
// from the records it stores. A delivered record younger than the
// duplicate window must stay, even when the stream is short of space, or a
// re-read of it after a restart is stored (and delivered) again.
func TestTrimKeepsRecordsYoungerThanTheDuplicateWindow(t *testing.T) {
	dir := t.TempDir()
	mod := func(o *Options) { o.MaxBytes = 4 << 20; o.DuplicateWindow = time.Hour }
	q := startQueue(t, dir, mod)
	stored := fillDelivered(t, q)
	if err := q.Trim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != uint64(stored) {
		t.Fatalf("after a short-of-space trim RAW holds %d of %d delivered records, all younger than the duplicate window", n, stored)
	}
	q.Close()
	q = startQueue(t, dir, mod)
	defer q.Close()
	before := streamMsgs(t, q, StreamRaw)
	err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "id-0", strings.Repeat("x", 64<<10))})
	if err != nil && !strings.Contains(err.Error(), "full") {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != before {
		t.Fatalf("a re-read of id-0 after a restart was stored again: %d records, was %d", n, before)
	}
}

// Issue 35 case 4: a replay holds the window it reads; the trimmer leaves
// it alone even when the stream is short of space, and trims it again
// once the hold is released.
func TestTrimHonoursAReplayHold(t *testing.T) {
	q := startQueue(t, t.TempDir(), func(o *Options) { o.MaxBytes = 4 << 20; o.DuplicateWindow = 100 * time.Millisecond })
	defer q.Close()
	ctx := context.Background()
	from := time.Now().Add(-time.Minute)
	h, err := q.HoldWindow(ctx, "replay-test", HoldSpec{Stream: StreamRaw, Subject: "raw.>", From: from})
	if err != nil {
		t.Fatal(err)
	}
	stored := fillDelivered(t, q)
	time.Sleep(200 * time.Millisecond) // past the duplicate window
	if err := q.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != uint64(stored) {
		t.Fatalf("with a hold on raw.> from %s, a short-of-space trim left %d of %d records", from.Format(time.RFC3339), n, stored)
	}
	h.Release()
	if err := q.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != 0 {
		t.Fatalf("after the hold's release a short-of-space trim left %d delivered records, want 0", n)
	}
}

// Issue 35 case 6: a forward step of the system clock by retain_delivered
// must not empty the replay window: the trimmer's clock does not run
// ahead of the monotonic one.
func TestTrimIgnoresAForwardClockStep(t *testing.T) {
	q := startQueue(t, t.TempDir(), func(o *Options) { o.RetainDelivered = time.Hour; o.DuplicateWindow = 100 * time.Millisecond })
	defer q.Close()
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint(i), "r")}); err != nil {
			t.Fatal(err)
		}
	}
	deliverAll(t, q, 4)
	step := time.Duration(0)
	clock := newTrimClock(func() time.Time { return time.Now().Add(step) })
	step = 2 * time.Hour // the system clock jumps past the whole window
	if err := q.trimAt(ctx, clock.now()); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, q, StreamRaw); n != 4 {
		t.Fatalf("after a forward clock step of 2h RAW holds %d of the 4 records stored within the 1h window", n)
	}
	if d := time.Until(clock.now()); d > time.Minute || d < -time.Minute {
		t.Fatalf("the trimmer's clock is %s off the monotonic one after the step", d)
	}
}

// Issue 35 case 4: a walk's silence is the end of its range only when the
// stream holds nothing more in it; Scan asks with storedInRange.
func TestStoredInRangeTellsSilenceFromTheEnd(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint(i), "r")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("b", "b0", "r")}); err != nil {
		t.Fatal(err)
	}
	o := ScanOptions{Stream: StreamRaw, Subject: RawSubject("a")}
	for _, tc := range []struct {
		next, upTo uint64
		want       bool
	}{{0, 6, true}, {3, 6, true}, {5, 6, true}, {6, 6, false}, {3, 2, false}} {
		got, err := q.storedInRange(ctx, o, tc.next, tc.upTo)
		if err != nil || got != tc.want {
			t.Errorf("raw.a from %d up to %d: %v, %v; want %v", tc.next, tc.upTo, got, err, tc.want)
		}
	}
	o.From = time.Now().Add(time.Hour)
	if got, err := q.storedInRange(ctx, o, 0, 6); err != nil || got {
		t.Errorf("raw.a from an hour ahead: %v, %v; want false", got, err)
	}
}
