package queue

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// The trimmer leaves a mark per stream and subject filter: the store time
// before which it removed records. A replay asked for an older window can
// then say exactly which part is gone, instead of quietly replaying less.
// The marks live in a small key-value bucket, replicated like the streams.
const trimBucket = "sluice_trimmed"

func trimKey(stream, subject string) string {
	return stream + "." + base64.RawURLEncoding.EncodeToString([]byte(subject))
}

func (q *Queue) trimMarks(ctx context.Context) (jetstream.KeyValue, error) {
	return q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: trimBucket, Description: "sluice: store time before which delivered records were trimmed, per stream and subject",
		History: 1, Storage: jetstream.FileStorage, Replicas: q.opts.Replicas,
	})
}

// markTrimmed records, before a purge below upTo, the store time of the
// first record that stays (or now, when none does).
func (q *Queue) markTrimmed(ctx context.Context, s jetstream.Stream, stream, subject string, upTo uint64) error {
	bound := time.Now()
	m, err := s.GetMsg(ctx, upTo, jetstream.WithGetMsgSubject(subject))
	switch {
	case err == nil:
		bound = m.Time
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return fmt.Errorf("queue: trim mark for %s %s: first record kept, from %d: %w", stream, subject, upTo, err)
	}
	kv, err := q.trimMarks(ctx)
	if err != nil {
		return fmt.Errorf("queue: trim marks: %w", err)
	}
	if err := raiseMark(ctx, kv, trimKey(stream, subject), bound); err != nil {
		return fmt.Errorf("queue: trim mark for %s %s: writing %s: %w", stream, subject, bound.UTC().Format(time.RFC3339Nano), err)
	}
	return nil
}

// raiseMark sets the mark at key to bound unless it is already as late.
// Nodes trim at once, so it writes by compare-and-swap on the key's
// revision (Create when absent, Update at the revision it read) and, when
// another writer got there first, reads again: the mark never moves back.
func raiseMark(ctx context.Context, kv jetstream.KeyValue, key string, bound time.Time) error {
	value := []byte(bound.UTC().Format(time.RFC3339Nano))
	for range markAttempts {
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = kv.Create(ctx, key, value)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another writer created it: compare with theirs
			}
			return err
		case err != nil:
			return err
		}
		// A mark that does not parse is overwritten: it says nothing.
		if old, err := time.Parse(time.RFC3339Nano, string(e.Value())); err == nil && !old.Before(bound) {
			return nil
		}
		_, err = kv.Update(ctx, key, value, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue // another writer moved it: compare with theirs
		}
		return err
	}
	return fmt.Errorf("key %s: still changed by other writers after %d attempts", key, markAttempts)
}

// markAttempts bounds raiseMark's reads and writes. Each conflict means
// another node moved the mark, so a few are plenty.
const markAttempts = 16

// TrimmedBefore is the store time before which records on subject (or on a
// filter that overlaps it) were removed; zero when nothing was.
func (q *Queue) TrimmedBefore(ctx context.Context, stream, subject string) (time.Time, error) {
	kv, err := q.js.KeyValue(ctx, trimBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("queue: trim marks: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("queue: trim marks: %w", err)
	}
	var bound time.Time
	for key := range keys.Keys() {
		rest, ok := strings.CutPrefix(key, stream+".")
		if !ok {
			continue
		}
		filter, err := base64.RawURLEncoding.DecodeString(rest)
		if err != nil || !server.SubjectsCollide(string(filter), subject) {
			continue
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, string(e.Value())); err == nil && t.After(bound) {
			bound = t
		}
	}
	return bound, nil
}
