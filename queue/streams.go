package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/backoff"
)

// Stream names.
const (
	StreamRaw = "RAW"
	StreamOut = "OUT"
	StreamDLQ = "DLQ"
)

// RawSubject is where a source publishes its batches.
func RawSubject(source string) string { return "raw." + source }

// OutSubject is where the transform publishes a sink's batches.
func OutSubject(sink string) string { return "out." + sink }

// DLQSubject is where a stage dead-letters a record.
func DLQSubject(stage, name string) string { return "dlq." + stage + "." + name }

// streamShare splits Options.MaxBytes between the streams. OUT gets the
// most: it is what grows while a SIEM is down.
var streamShares = []struct {
	name    string
	subject string
	share   float64
}{
	{StreamRaw, "raw.>", 0.30},
	{StreamOut, "out.>", 0.60},
	{StreamDLQ, "dlq.>", 0.10},
}

// streamConfig is the one definition of a stream. Limits retention with
// DiscardNew: JetStream never drops a stored record to make room (a full
// stream refuses the publish instead); delivered records are removed by the
// trimmer (trim.go), oldest first, when they age out of the replay window or
// when space runs short.
func (q *Queue) streamConfig(name, subject string, share float64) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Subjects:    []string{subject},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    int64(float64(q.opts.MaxBytes) * share),
		MaxMsgs:     -1,
		MaxAge:      0,
		MaxMsgSize:  q.opts.MaxPayload,
		Storage:     jetstream.FileStorage,
		Replicas:    q.opts.Replicas,
		Duplicates:  q.opts.DuplicateWindow,
		AllowDirect: true,
	}
}

// ensureStreams creates or updates every stream. Several nodes may do this at
// once, and a cluster may not have a meta leader yet: retry until ctx ends.
// A stream that stores more than its new limit (queue.max_bytes lowered)
// stops startup before any stream is changed.
func (q *Queue) ensureStreams(ctx context.Context) error {
	stored := make([]uint64, len(streamShares))
	tooSmall := false
	for i, s := range streamShares {
		err := q.retryStream(ctx, s.name, "read stream", func(actx context.Context) (err error) {
			stored[i], err = q.storedBytes(actx, s.name)
			return err
		})
		if err != nil {
			return err
		}
		// OUT over its share by up to the reserve is what a backlog move's
		// Borrow left: the limit is restored, and the sinks drain it.
		limit := q.streamConfig(s.name, s.subject, s.share).MaxBytes
		if s.name == StreamOut {
			limit += q.borrowReserve()
		}
		if int64(stored[i]) > limit {
			tooSmall = true
		}
	}
	if tooSmall {
		return tooSmallError(q.opts.MaxBytes, stored)
	}
	for _, s := range streamShares {
		cfg := q.streamConfig(s.name, s.subject, s.share)
		err := q.retryStream(ctx, s.name, "create stream", func(actx context.Context) error {
			_, err := q.js.CreateOrUpdateStream(actx, cfg)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// retryStream runs op until it succeeds, fails for good or ctx ends.
func (q *Queue) retryStream(ctx context.Context, name, what string, op func(context.Context) error) error {
	wait := backoff.New(100*time.Millisecond, 2*time.Second)
	for {
		// Per attempt: without a meta leader a request gets no answer at all.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !retryableStreamError(err) {
			return fmt.Errorf("queue: stream %s: %w", name, err)
		}
		q.log.Info("waiting for JetStream to "+what, "stream", name, "err", err)
		if !wait.Wait(ctx) {
			return fmt.Errorf("queue: stream %s: %w (last error: %v)", name, ctx.Err(), err)
		}
	}
}

func retryableStreamError(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeStreamNameInUse, // a peer created it a moment ago
			10005, // no suitable peers yet (cluster forming)
			10006, // cluster not active
			10008, // cluster not available
			10009: // no meta leader
			return true
		}
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrNoHeartbeat) || isTimeout(err)
}

// borrowReserve is the room a stream may be lent beyond its share of
// queue.max_bytes (within the server's storeSlack): two of the largest
// messages, enough for one group of copies a job stores before it removes
// their originals.
func (q *Queue) borrowReserve() int64 { return 2 * int64(q.opts.MaxPayload) }

// Borrow raises stream's limit by the reserve for a job that must store
// before it can remove — a sink's backlog moved while it fills OUT, the
// one case where waiting for room never ends. release restores the limit;
// with DiscardNew a limit below what is stored removes nothing, the stream
// just takes no more until its sinks drain it, and startup accepts OUT
// over its share by up to the reserve. Only OUT is lent room.
func (q *Queue) Borrow(ctx context.Context, stream string) (release func(context.Context) error, err error) {
	var cfg jetstream.StreamConfig
	found := false
	for _, s := range streamShares {
		if s.name == stream {
			cfg, found = q.streamConfig(s.name, s.subject, s.share), true
		}
	}
	if !found {
		return nil, fmt.Errorf("queue: borrow: no stream %s", stream)
	}
	lent := cfg
	lent.MaxBytes += q.borrowReserve()
	if _, err := q.js.UpdateStream(ctx, lent); err != nil {
		return nil, fmt.Errorf("queue: lend %s %d bytes: %w", stream, q.borrowReserve(), err)
	}
	return func(ctx context.Context) error {
		if _, err := q.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("queue: restore the limit of %s: %w", stream, err)
		}
		return nil
	}, nil
}
