package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sluicehq/sluice/queue/batch"
)

// ErrBufferFull means a stream has reached its limit with undelivered records.
// The publishing stage must pause and retry; nothing was stored.
var ErrBufferFull = errors.New("buffer full")

// ErrUnavailable means JetStream did not answer a publish: in a cluster, a
// quorum of the stream's replicas is not reachable. It is the buffer's
// state, not the message's fault: the publishing stage waits and retries
// under the same message ID, and counts no delivery against the batch.
var ErrUnavailable = errors.New("buffer not answering")

// unavailableError keeps the wrapped error's text and makes
// errors.Is(err, ErrUnavailable) true.
type unavailableError struct{ error }

func (e unavailableError) Is(target error) bool { return target == ErrUnavailable }
func (e unavailableError) Unwrap() error        { return e.error }

// PublishError reports which messages of a Publish call were not stored.
type PublishError struct {
	Failed []int   // indexes into the published slice
	Errs   []error // the error of each failed message
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("queue: %d of the messages not stored; first (message %d): %v", len(e.Failed), e.Failed[0], e.Errs[0])
}

// Is makes errors.Is(err, ErrBufferFull) true when any message hit a full stream.
func (e *PublishError) Is(target error) bool {
	for _, err := range e.Errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func (e *PublishError) Unwrap() []error { return e.Errs }

// Publish stores every batch and returns only when each has its JetStream
// ack (or failed). Each batch must have an ID so that a re-publish after a
// crash is deduplicated. On failure the error is a *PublishError, its
// indexes into bs; a batch that did not fail is stored, whatever the others did.
func (q *Queue) Publish(ctx context.Context, bs []*batch.Batch) error {
	msgs := make([]*nats.Msg, len(bs))
	for i, b := range bs {
		msgs[i] = &nats.Msg{Subject: b.Subject, Header: b.Header(), Data: b.Body}
	}
	return q.PublishMessages(ctx, msgs)
}

// PublishMessages is Publish for messages as JetStream stores them: for
// the operations that copy stored messages with their headers verbatim
// (replay, backlog move, DLQ re-drive). Each message must carry a
// Nats-Msg-Id header.
func (q *Queue) PublishMessages(ctx context.Context, msgs []*nats.Msg) error {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	perr := &PublishError{}
	fail := func(i int, err error) {
		perr.Failed = append(perr.Failed, i)
		perr.Errs = append(perr.Errs, q.classifyPublishError(msgs[i].Subject, err))
	}
	for i, m := range msgs {
		if m.Header.Get(batch.HeaderMsgID) == "" {
			fail(i, errors.New("no Nats-Msg-Id header"))
			continue
		}
		// A full window waits (backpressure) rather than failing the
		// whole pull after the default 200 ms, which made the source pull
		// and publish everything again under load.
		f, err := q.js.PublishMsgAsync(m, jetstream.WithStallWait(publishAckTimeout))
		if err != nil {
			fail(i, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			// A duplicate is stored already: a re-read or re-publish, or
			// two producers sharing IDs by mistake, which only this
			// counter shows.
			if ack.Duplicate {
				q.metrics.duplicates.WithLabelValues(ack.Stream).Inc()
			} else {
				q.metrics.published(ack.Stream, msgs[i])
			}
		case err := <-f.Err():
			fail(i, err)
		case <-ctx.Done():
			fail(i, ctx.Err())
		}
	}
	if len(perr.Failed) > 0 {
		q.metrics.publishFailed(perr)
		if errors.Is(perr, ErrBufferFull) {
			q.kickTrim()
		}
		return perr
	}
	return nil
}

// classifyPublishError turns JetStream's "maximum bytes exceeded" and its
// relatives into ErrBufferFull, keeping the original text, and says what a
// missing answer means on this node: in a cluster, a stream without a
// quorum of its replicas; on a single node, its own server not storing.
func (q *Queue) classifyPublishError(subject string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch {
		case apiErr.ErrorCode == 10077 && (strings.Contains(apiErr.Description, "maximum bytes") || strings.Contains(apiErr.Description, "maximum messages")),
			apiErr.ErrorCode == 10023, // insufficient resources
			apiErr.ErrorCode == 10047: // storage resources exceeded
			return fmt.Errorf("publish to %s: %w: %s", subject, ErrBufferFull, apiErr.Description)
		}
	}
	if err != nil && strings.Contains(err.Error(), "maximum bytes exceeded") {
		return fmt.Errorf("publish to %s: %w: %v", subject, ErrBufferFull, err)
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) || isTimeout(err) {
		if !q.clustered {
			return unavailableError{fmt.Errorf("publish to %s: %w (single node: its embedded JetStream server did not answer — stopping, or its store failing, see the node's log; the record stays at its source and is retried under the same message ID)", subject, err)}
		}
		return unavailableError{fmt.Errorf("publish to %s: %w (in a cluster: a quorum of the stream's replicas is not reachable, see sluice status; nothing was stored, the record stays at its source and is retried)", subject, err)}
	}
	return fmt.Errorf("publish to %s: %w", subject, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func isBufferFull(err error) bool { return errors.Is(err, ErrBufferFull) }
