package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// storeSlack is server storage beyond the streams' limits, for stream
// metadata and the trim marks' bucket.
const storeSlack = 64 << 20

// serverMaxStore is the JetStream server's storage limit: the streams'
// limits add up to maxBytes, but the server reloads every stream of the
// store at the limits it was saved with before sluice can change them, and
// refuses (insufficient storage resources) while their sum exceeds its
// limit. So after queue.max_bytes was lowered the server must first have
// room for the saved limits; ensureStreams then shrinks the streams, and
// they, not the server, bound what is stored.
func serverMaxStore(storeDir string, maxBytes int64) int64 {
	return max(maxBytes, savedStreamLimits(storeDir)) + storeSlack
}

// savedStreamLimits adds up the MaxBytes of every stream saved under
// storeDir (JetStream's <store>/jetstream/<account>/streams/<name>/meta.inf,
// plain JSON of the stream's config). A file it cannot read counts as 0:
// the server then refuses as before and ensureStreams says why.
func savedStreamLimits(storeDir string) int64 {
	metas, _ := filepath.Glob(filepath.Join(storeDir, "jetstream", "*", "streams", "*", "meta.inf"))
	var sum int64
	for _, path := range metas {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var cfg struct {
			MaxBytes int64 `json:"max_bytes"`
		}
		if json.Unmarshal(b, &cfg) == nil && cfg.MaxBytes > 0 {
			sum += cfg.MaxBytes
		}
	}
	return sum
}

// storedBytes is what a stream stores now; 0 when it does not exist yet.
func (q *Queue) storedBytes(ctx context.Context, name string) (uint64, error) {
	s, err := q.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Bytes, nil
}

// tooSmallError says, when queue.max_bytes was lowered below what the
// buffer stores, what each stream stores, what its share would be, and
// the smallest max_bytes that holds it all.
func tooSmallError(maxBytes int64, stored []uint64) error {
	var parts []string
	need := int64(16 << 20) // the config's own minimum
	for i, s := range streamShares {
		limit := int64(float64(maxBytes) * s.share)
		parts = append(parts, fmt.Sprintf("%s stores %s, its share (%d%%) would be %s", s.name, mib(int64(stored[i])), int(math.Round(s.share*100)), mib(limit)))
		n := int64(math.Ceil(float64(stored[i]+1)/s.share/(1<<20))) << 20 // +1: the share is rounded down
		need = max(need, n)
	}
	return fmt.Errorf("queue.max_bytes %s is less than the buffer stores: %s; set queue.max_bytes to at least %s, or keep the old size until the sinks have delivered the backlog and the trimmer has removed it (delivered records go after queue.retain_delivered; undelivered ones never do)",
		mib(maxBytes), strings.Join(parts, "; "), mib(need))
}

// mib prints a size in MiB (GiB when whole), one decimal when not whole.
func mib(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	}
	return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
}
