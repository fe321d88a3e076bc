package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Streams keep delivered records for replay. JetStream alone cannot express
// "keep undelivered records whatever their age, keep delivered ones for a
// window, drop delivered ones first when short of space", so the streams use
// Limits retention with DiscardNew (nothing stored is ever dropped by
// JetStream) and this loop removes delivered records itself: a record is
// delivered once every durable consumer whose filters match its subject has
// acked past it (the consumer's ack floor), sluice's own or not
// (trimreaders.go). Delivered records go when older than RetainDelivered,
// or, when a stream is over trimHighWater of its limit, all of them older
// than DuplicateWindow, oldest first. A window a running job reads is
// held (hold.go) and stays in either case. Whenever the trimmer lacks a definite answer (a consumer list with
// consumers missing, a replay-window lookup that timed out) it keeps the
// records and tries again next round.
const trimHighWater = 0.8

// TrimInterval is how often the trimmer runs. A publish refused for a full
// stream also starts it at once (at most every trimKickGap): with a buffer
// small against the rate, a stream can fill with delivered records between
// two ticks, and waiting for the tick would stall the pipeline.
const (
	TrimInterval = 15 * time.Second
	trimKickGap  = time.Second
)

func (q *Queue) trimLoop(ctx context.Context) {
	defer close(q.trimDone)
	t := time.NewTicker(TrimInterval)
	defer t.Stop()
	var last time.Time
	clock := newTrimClock(time.Now)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-q.trimSoon:
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(last.Add(trimKickGap))):
			}
		}
		last = time.Now()
		if err := q.trimAt(ctx, clock.now()); err != nil && ctx.Err() == nil {
			q.log.Warn("trimming delivered records failed", "err", err)
		}
	}
}

// kickTrim asks the trimmer to run now; it never blocks.
func (q *Queue) kickTrim() {
	select {
	case q.trimSoon <- struct{}{}:
	default:
	}
}

// Trim removes delivered records that fell out of the replay window, or all
// delivered records of a stream that is short of space. Safe to run on every
// node of a cluster at once: a purge below the ack floor is idempotent and
// trim marks only move forward (raiseMark).
func (q *Queue) Trim(ctx context.Context) error { return q.trimAt(ctx, time.Now()) }

// trimAt trims as if it were now (the trim loop's clock, trimclock.go).
func (q *Queue) trimAt(ctx context.Context, now time.Time) error {
	holds, err := q.holds(ctx)
	if err != nil {
		// A window a replay reads may be among them: keep everything this round.
		return fmt.Errorf("queue: trim: %w", err)
	}
	var errs []error
	for _, name := range []string{StreamRaw, StreamOut} {
		if err := q.trimStream(ctx, name, now, holds); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (q *Queue) trimStream(ctx context.Context, name string, now time.Time, holds []HoldSpec) error {
	s, err := q.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("queue: trim %s: %w", name, err)
	}
	// Every subject stored, with the stream's state: purges go per
	// concrete subject, whatever filters the consumers use.
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return fmt.Errorf("queue: trim %s: stream info: %w", name, err)
	}
	consumers, err := q.listConsumers(ctx, name)
	if err != nil {
		return fmt.Errorf("queue: trim %s: %w", name, err)
	}
	floors := deliveredFloors(info.State.Subjects, durableReaders(consumers))
	short := info.Config.MaxBytes > 0 && float64(info.State.Bytes) > trimHighWater*float64(info.Config.MaxBytes)
	// Delivered records stay for the replay window, or when short of
	// space for the duplicate window only: JetStream rebuilds its
	// duplicate table on restart from the records it stores, so one
	// trimmed sooner is forgotten and a re-read of it stored again.
	keep := max(q.opts.RetainDelivered, q.opts.DuplicateWindow)
	if short {
		keep = q.opts.DuplicateWindow
	}
	cutoff := now.Add(-keep)
	var errs []error
	for _, subj := range slices.Sorted(maps.Keys(floors)) {
		floor := floors[subj]
		if floor == 0 {
			continue
		}
		upTo := floor + 1                            // purge keeps this sequence and later ones
		since := heldFrom(holds, name, subj, cutoff) // a running replay's window stays
		first, err := q.firstSeqSince(ctx, name, subj, since)
		if err != nil {
			// No definite answer: leave the subject for the next round.
			q.log.Warn("not trimming a subject this round: no answer on its replay window", "stream", name, "subject", subj, "err", err)
			continue
		}
		upTo = min(upTo, first)
		if upTo <= info.State.FirstSeq {
			continue
		}
		if err := q.markTrimmed(ctx, s, name, subj, upTo); err != nil {
			errs = append(errs, err) // no purge without the mark: a replay must know what is gone
			continue
		}
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(upTo)); err != nil {
			errs = append(errs, fmt.Errorf("queue: trim %s %s below %d: %w", name, subj, upTo, err))
			continue
		}
		q.log.Debug("trimmed delivered records", "stream", name, "subject", subj, "below_seq", upTo, "short_of_space", short)
	}
	return errors.Join(errs...)
}

// firstSeqSince is the sequence of the first message on subj stored at or
// after t, or the highest sequence there is when the stream says it holds
// none. Only a message or the stream leader's definite "no message found"
// (404) is an answer: a timeout, no responders or any other error is an
// error, and the caller then leaves the subject alone — read as "nothing
// newer", it would purge the whole replay window.
//
// It asks the stream leader through the JetStream API's message get with a
// start time (not the direct get, which any replica may answer, nor a
// consumer, whose empty fetch cannot tell a 408 from "none").
func (q *Queue) firstSeqSince(ctx context.Context, stream, subj string, t time.Time) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, q.opts.trimLookupWait)
	defer cancel()
	m, err := q.msgGet(ctx, stream, server.JSApiMsgGetRequest{StartTime: &t, NextFor: subj, NoHeaders: true})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ^uint64(0), nil
	}
	if err != nil {
		return 0, fmt.Errorf("queue: first record on %s %s since %s: %w", stream, subj, t.UTC().Format(time.RFC3339), err)
	}
	return m.Sequence, nil
}

// msgGet asks the stream leader for one stored message. A "no message
// found" answer is jetstream.ErrMsgNotFound.
func (q *Queue) msgGet(ctx context.Context, stream string, req server.JSApiMsgGetRequest) (*server.StoredMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("message get: %w", err)
	}
	var resp server.JSApiMsgGetResponse
	if err := q.apiRequest(ctx, fmt.Sprintf(server.JSApiMsgGetT, stream), body, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == uint16(server.JSNoMessageFoundErr) {
			return nil, jetstream.ErrMsgNotFound
		}
		return nil, fmt.Errorf("message get on %s: %w", stream, resp.Error)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("message get on %s: an answer with neither message nor error", stream)
	}
	return resp.Message, nil
}
