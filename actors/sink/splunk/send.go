package splunk

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/sink"
	"github.com/sluicehq/sluice/internal/backoff"
)

// send posts events once, splitting around refused ones, and ends each
// event it can. It returns how long to wait before the events left go
// again when HEC asked for a pause; 0 leaves the wait to the runner's
// backoff (or none when some events ended).
func (s *Sink) send(ctx context.Context, b *sink.Batch, r *request, events []event) time.Duration {
	if len(events) == 0 || !s.whileAcksOff(ctx) {
		return 0
	}
	start := time.Now()
	// A request under way finishes even when the node stops (bounded by
	// the request timeout), so what Splunk took is acked, not sent twice.
	res := s.hec.post(context.WithoutCancel(ctx), s.payload(r, events))
	s.m.latency.Observe(time.Since(start).Seconds())
	out := classify(res)
	if ctx.Err() != nil && out != accepted {
		return 0
	}
	switch out {
	case accepted:
		s.tookAll(ctx, b, events, res)
	case badEvent:
		s.m.requests.WithLabelValues("bad_event").Inc()
		if n := res.reply.InvalidNum; n != nil && *n >= 0 && *n < len(events) {
			// Splunk indexed the events before the bad one; the rest goes
			// again at once.
			s.accepted(events[:*n])
			s.deadLetter(events[*n], res)
			return 0
		}
		return s.split(ctx, b, r, events, res)
	case tooLarge:
		s.m.requests.WithLabelValues("too_large").Inc()
		return s.split(ctx, b, r, events, res)
	case pause:
		s.m.requests.WithLabelValues("refused").Inc()
		s.m.State.Set(sink.StatePaused)
		s.h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s %s (%s); paused, retrying every %s", s.cfg.URL, pausedWhy(res), res, s.cfg.PausedRetry))
		s.log.Error("HEC refused the sink; paused", "answer", res.String(), "retry_every", s.cfg.PausedRetry.String())
		return s.cfg.PausedRetry.D()
	case retry:
		s.m.requests.WithLabelValues("retry").Inc()
		s.m.Retries.WithLabelValues(retryReason(res)).Inc()
		s.m.State.Set(sink.StateRetrying)
		if b.Fails == 0 || (b.Fails+1)%10 == 0 {
			s.log.Warn("HEC unavailable; holding the batch and retrying", "answer", res.String(), "attempt", b.Fails+1)
		}
		s.h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s unavailable (%s); retrying", s.cfg.URL, res))
	}
	return 0
}

// split sends the halves of events HEC refused as a whole (an event it
// did not name was bad, or the request was too large) one after the
// other; a single event is dead-lettered.
func (s *Sink) split(ctx context.Context, b *sink.Batch, r *request, events []event, res result) time.Duration {
	if len(events) == 1 {
		s.deadLetter(events[0], res)
		return 0
	}
	half := len(events) / 2
	if wait := s.send(ctx, b, r, events[:half]); wait > 0 || s.anyLeft(events[:half]) {
		return wait // the first half waits: so does the second
	}
	return s.send(ctx, b, r, events[half:])
}

func (s *Sink) anyLeft(events []event) bool {
	return slices.ContainsFunc(events, func(e event) bool { return !e.rec.Ended() })
}

// tookAll ends events HEC took: at once, or with indexer acknowledgement
// on, once HEC says they are indexed. Those it does not say are indexed
// within ack_timeout are left, to be sent again.
func (s *Sink) tookAll(ctx context.Context, b *sink.Batch, events []event, res result) {
	if !s.cfg.Ack {
		s.accepted(events)
		return
	}
	switch s.waitIndexed(ctx, res) {
	case indexed:
		s.accepted(events)
	case acksOff:
		// HEC took the events but will never say they are indexed:
		// sending them again would only copy them.
		s.accepted(events)
		s.pauseForAcksOff(res)
	case notIndexed:
		s.m.Retries.WithLabelValues("ack_timeout").Inc()
		s.m.State.Set(sink.StateRetrying)
		s.log.Warn("HEC took the request but did not say it was indexed in time; sending it again", "ack_timeout", s.cfg.AckTimeout.String(), "attempt", b.Fails+1)
		s.h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s took a request but did not say it was indexed within ack_timeout (%s); retrying", s.cfg.URL, s.cfg.AckTimeout))
	}
}

// payload is the request's body for events, made (and compressed) again
// only when the events differ from the last payload's.
func (s *Sink) payload(r *request, events []event) *payload {
	same := r.enc != nil && len(r.encFor) == len(events)
	for i := 0; same && i < len(events); i++ {
		same = r.encFor[i] == events[i].n
	}
	if same {
		return r.enc
	}
	if r.enc != nil {
		r.enc.release()
	}
	body := r.body
	if r.moved || len(events) != len(r.events) {
		body = make([]byte, 0, r.bytes)
		for _, e := range events {
			body = append(body, e.body...)
		}
	}
	r.enc, r.encFor = s.hec.encode(body), make([]int, len(events))
	for i, e := range events {
		r.encFor[i] = e.n
	}
	return r.enc
}

func (s *Sink) accepted(events []event) {
	if len(events) == 0 {
		return
	}
	n := 0
	for _, e := range events {
		n += len(e.body)
		e.rec.Accept()
	}
	s.m.Events.Add(float64(len(events)))
	s.m.Bytes.Add(float64(n))
	s.m.requests.WithLabelValues("accepted").Inc()
	s.m.State.Set(sink.StateUp)
	s.h.SetHealthy()
}

func (s *Sink) deadLetter(e event, res result) {
	e.rec.DeadLetter(fmt.Sprintf("Splunk HEC refused the event: %s", res))
	s.log.Warn("event refused by HEC; sent to the DLQ", "record", e.rec.ID(), "answer", res.String())
}

// What became of a request HEC took, with indexer acknowledgement on.
type indexing int

const (
	indexed    indexing = iota
	notIndexed          // not within AckTimeout
	acksOff             // the token has indexer acknowledgement off
	stopped             // ctx ended
)

// waitIndexed polls indexer acknowledgement until the request is indexed
// or AckTimeout passes.
func (s *Sink) waitIndexed(ctx context.Context, res result) indexing {
	if res.reply.AckID == nil {
		return acksOff // Splunk's success without an ackId: useACK is off
	}
	deadline := time.Now().Add(s.cfg.AckTimeout.D())
	for polls := 1; time.Now().Before(deadline); polls++ {
		ok, ar := s.hec.acked(ctx, *res.reply.AckID)
		switch {
		case ok:
			return indexed
		case ar.hec && ar.reply.Code == 14: // "ACK is disabled": turned off since
			return acksOff
		}
		if !actors.Sleep(ctx, backoff.Nth(polls, 100*time.Millisecond, ackPollMax)) {
			return stopped
		}
	}
	if ctx.Err() != nil {
		return stopped
	}
	return notIndexed
}

// ackPollMax caps the wait between two asks for indexer acknowledgement.
const ackPollMax = 2 * time.Second

// pauseForAcksOff pauses the sink: with ack on and the token's indexer
// acknowledgement off, every request would be taken and never confirmed.
func (s *Sink) pauseForAcksOff(res result) {
	s.noAcks.Store(true)
	s.m.State.Set(sink.StatePaused)
	s.h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s: the token has indexer acknowledgement off: set ack: false, or turn useACK on for the token; paused (what HEC took is counted as received, not indexed), asking again every %s", s.cfg.URL, s.cfg.PausedRetry))
	s.log.Error("the HEC token has indexer acknowledgement off but the sink has ack: true; paused: set ack: false, or turn useACK on for the token", "answer", res.String(), "retry_every", s.cfg.PausedRetry.String())
}
