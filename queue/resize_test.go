package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// fillRaw stores n messages of 64 KiB in RAW.
func fillRaw(t *testing.T, q *Queue, n int) {
	t.Helper()
	big := strings.Repeat("x", 64<<10)
	for i := 0; i < n; i++ {
		if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", fmt.Sprint("id-", i), big)}); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

func streamMaxBytes(t *testing.T, q *Queue, name string) int64 {
	t.Helper()
	info, err := q.StreamInfo(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Config.MaxBytes
}

// Lowering queue.max_bytes (issue 35, case 3): the store was written with
// larger stream limits than the new max_bytes allows the server, yet what
// is stored fits the new limits, so the node starts with them.
func TestLoweringMaxBytesShrinksTheStreams(t *testing.T) {
	dir := t.TempDir()
	q := startQueue(t, dir, func(o *Options) { o.MaxBytes = 512 << 20 })
	fillRaw(t, q, 100) // ~6.3 MiB
	q.Close()

	q = startQueue(t, dir, func(o *Options) { o.MaxBytes = 64 << 20 })
	defer q.Close()
	if n := streamMsgs(t, q, StreamRaw); n != 100 {
		t.Fatalf("after shrinking RAW holds %d, want 100", n)
	}
	for _, s := range streamShares {
		if got, want := streamMaxBytes(t, q, s.name), int64(float64(64<<20)*s.share); got != want {
			t.Errorf("stream %s MaxBytes %d, want %d", s.name, got, want)
		}
	}
	// And it takes writes at the new size.
	if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "after", "r")}); err != nil {
		t.Fatal(err)
	}
	q.Close()
	// Raising it again works as before.
	q = startQueue(t, dir, func(o *Options) { o.MaxBytes = 256 << 20 })
	if got := streamMaxBytes(t, q, StreamRaw); got != int64(float64(256<<20)*streamShares[0].share) {
		t.Errorf("raised: RAW MaxBytes %d", got)
	}
}

// Below what is stored, the node does not start, and says why and what
// would do.
func TestLoweringMaxBytesBelowWhatIsStoredStopsStartup(t *testing.T) {
	dir := t.TempDir()
	q := startQueue(t, dir, func(o *Options) { o.MaxBytes = 512 << 20 })
	fillRaw(t, q, 100) // ~6.3 MiB in RAW
	q.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// RAW's 30 % of 16 MiB is 4.8 MiB.
	_, err := Start(ctx, Options{DataDir: dir, ServerName: "test", MaxBytes: 16 << 20})
	if err == nil {
		t.Fatal("started with a RAW limit below what RAW stores")
	}
	for _, want := range []string{"queue.max_bytes 16MiB", "RAW stores 6.3MiB", "its share (30%) would be 4.8MiB", "set queue.max_bytes to at least 21MiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// Nothing was lost, and the size it asks for starts with everything.
	q = startQueue(t, dir, func(o *Options) { o.MaxBytes = 21 << 20 })
	defer q.Close()
	if n := streamMsgs(t, q, StreamRaw); n != 100 {
		t.Fatalf("RAW holds %d after the refused start, want 100", n)
	}
}
