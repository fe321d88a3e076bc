package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// A hold keeps the trimmer off a window of a stream while a job reads it
// (a replay): whether the stream is short of space or the records age out
// of the replay window, nothing on the held subjects stored at or after
// the hold's start is removed until the hold is released. Holds live in a
// small key-value bucket, replicated like the streams, so that every
// node's trimmer honours them; each expires holdTTL after its last
// refresh, so a hold whose node died does not keep records forever.
const (
	holdBucket  = "sluice_holds"
	holdTTL     = 2 * time.Minute
	holdRefresh = holdTTL / 4
)

// HoldSpec is the window a hold keeps.
type HoldSpec struct {
	Stream  string    `json:"stream"`
	Subject string    `json:"subject"` // a filter: raw.>, out.splunk
	From    time.Time `json:"from"`    // records stored at or after it stay
}

// Hold is a registered hold; Release ends it.
type Hold struct {
	q    *Queue
	key  string
	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

func (q *Queue) holdBucket(ctx context.Context) (jetstream.KeyValue, error) {
	return q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: holdBucket, Description: "sluice: windows a running job reads, which the trimmer leaves alone",
		History: 1, TTL: holdTTL, Storage: jetstream.FileStorage, Replicas: q.opts.Replicas,
	})
}

// HoldWindow registers a hold named id (a job ID) and keeps it alive until
// Release. It returns once the hold is stored: from then on no trimmer
// removes the window.
func (q *Queue) HoldWindow(ctx context.Context, id string, spec HoldSpec) (*Hold, error) {
	kv, err := q.holdBucket(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: hold %s: bucket %s: %w", id, holdBucket, err)
	}
	value, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("queue: hold %s: %w", id, err)
	}
	if _, err := kv.Put(ctx, id, value); err != nil {
		return nil, fmt.Errorf("queue: hold %s on %s %s: %w", id, spec.Stream, spec.Subject, err)
	}
	hctx, stop := context.WithCancel(context.Background())
	h := &Hold{q: q, key: id, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(holdRefresh)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if _, err := kv.Put(hctx, id, value); err != nil && hctx.Err() == nil {
					q.log.Warn("refreshing a replay hold failed; it expires unless a later refresh succeeds", "hold", id, "ttl", holdTTL, "err", err)
				}
			}
		}
	}()
	return h, nil
}

// Release ends the hold; the trimmer may remove the window again.
func (h *Hold) Release() {
	h.once.Do(func() {
		h.stop()
		<-h.done
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		kv, err := h.q.js.KeyValue(ctx, holdBucket)
		if err == nil {
			err = kv.Purge(ctx, h.key)
		}
		if err != nil {
			h.q.log.Warn("releasing a replay hold failed; it expires by itself", "hold", h.key, "ttl", holdTTL, "err", err)
		}
	})
}

// holds reads every hold now registered. No bucket means no holds; any
// other failure is an error, and the trimmer then leaves the streams alone
// for the round.
func (q *Queue) holds(ctx context.Context) ([]HoldSpec, error) {
	kv, err := q.js.KeyValue(ctx, holdBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("holds: bucket %s: %w", holdBucket, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("holds: listing %s: %w", holdBucket, err)
	}
	var out []HoldSpec
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("holds: %s: %w", key, err)
		}
		var h HoldSpec
		if err := json.Unmarshal(e.Value(), &h); err != nil {
			// A hold we cannot read may cover anything: keep everything.
			h = HoldSpec{Subject: ">"}
		}
		out = append(out, h)
	}
	return out, nil
}

// heldFrom lowers cutoff to the start of any hold on stream whose filter
// overlaps subj (a hold that names no stream holds every stream).
func heldFrom(holds []HoldSpec, stream, subj string, cutoff time.Time) time.Time {
	for _, h := range holds {
		if h.Stream != "" && h.Stream != stream {
			continue
		}
		if h.Subject != "" && !server.SubjectsCollide(h.Subject, subj) {
			continue
		}
		if h.From.Before(cutoff) {
			cutoff = h.From
		}
	}
	return cutoff
}
