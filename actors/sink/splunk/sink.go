package splunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// Deps are what a sink is given.
type Deps struct {
	Queue   *queue.Queue
	Logger  *slog.Logger
	Metrics prometheus.Registerer // already labelled with the sink's name
}

// Sink is one Splunk HEC sink actor.
type Sink struct {
	cfg      *Config
	defaults defaults
	q        *queue.Queue
	log      *slog.Logger
	hec      *hecClient
	m        *metrics

	// noAcks is set when HEC said the token has indexer acknowledgement
	// off: every sender then holds its request until it is on again. An
	// atomic, as the senders are goroutines of their own.
	noAcks atomic.Bool

	heldMu sync.Mutex
	held   map[*request]time.Time // requests in flight → their oldest fetch time

	// bodies keeps request bodies (*[]byte, ~1 MB each) for the next
	// requests. Only with gzip on: the compressor is then the body's only
	// reader and is done with it when post returns, whereas an unzipped
	// body is sent as it is, and net/http may still be reading it after the
	// answer came.
	bodies sync.Pool
}

// New builds a sink; Run runs it.
func New(cfg *Config, deps Deps) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink %q: %w", cfg.Name, err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, defaults: newDefaults(cfg), q: deps.Queue, log: log.With("sink", cfg.Name), held: map[*request]time.Time{}}
	hec, err := newHECClient(cfg, s.log)
	if err != nil {
		return nil, fmt.Errorf("sink %q: %w", cfg.Name, err)
	}
	s.hec = hec
	reg := deps.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if s.m, err = newMetrics(reg, s.oldestHeldSeconds); err != nil {
		return nil, fmt.Errorf("sink %q: metrics: %w", cfg.Name, err)
	}
	return s, nil
}

// request is one HEC POST's worth of events, from one or more OUT batches.
// Its batches are acked together once every event is accepted or dead-lettered.
type request struct {
	deliveries []*queue.Delivery
	events     []event
	bytes      int
	oldest     time.Time // earliest fetch time of its records
	// body holds the events rendered one after another: sent as it is
	// when Splunk takes them all (the usual case), no copy. Each event's
	// body is a slice of it (of an older array if body had to grow).
	body  []byte
	moved bool // body grew into a new array: events no longer slice it
}

// giveBack returns the request's batches to JetStream for delivery now, to
// this node after a restart or to another node.
func (r *request) giveBack() { queue.GiveBack(r.deliveries) }

type event struct {
	body   []byte // the rendered HEC event
	index  int    // of the record in its batch
	record []byte // the OUT record, for the DLQ
	from   *queue.Delivery
}

func (e *event) recordID() string { return batch.RecordID(e.from.ID, e.index) }

// Run pulls the sink's batches and hands full requests to InFlight senders.
// The loop owns the request being filled; each sender owns the request it
// sends until it is acked.
func (s *Sink) Run(ctx context.Context, h *actors.Health) error {
	cons, err := s.q.Consumer(ctx, queue.ConsumerConfig{
		Stream: queue.StreamOut, Durable: "sink-" + s.cfg.Name, Subject: queue.OutSubject(s.cfg.Name),
		AckWait: s.cfg.AckWait.D(), MaxAckPending: 1024,
		Stage: "sink", Name: s.cfg.Name,
		// A batch that crashed the sink this many times is dead-lettered;
		// a Splunk outage does not count: held batches are kept in progress.
		MaxDeliveries: 10,
	})
	if err != nil {
		return fmt.Errorf("sink %q: %w", s.cfg.Name, err)
	}
	defer cons.Close()
	s.checkHealth(ctx, h)

	// Senders stop only after this loop stopped fetching: a batch they give
	// back is redelivered at once, and a pull request of ours still open
	// would take it and, cancelled, strand it until AckWait.
	sendCtx, stopSenders := context.WithCancel(context.WithoutCancel(ctx))
	work := make(chan *request)
	var wg sync.WaitGroup
	defer func() {
		stopSenders() // on an error return too: senders stop retrying
		close(work)
		wg.Wait()
	}()
	for i := 0; i < s.cfg.InFlight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				s.deliver(sendCtx, h, r)
			}
		}()
	}

	var cur *request
	var lingerEnd time.Time
	// dispatch hands cur to a sender, keeping its batches alive while every
	// sender is busy (Splunk down): held batches must not be redelivered,
	// nor those fetched for the next request (next).
	dispatch := func(next []*queue.Delivery) bool {
		keep := time.NewTicker(s.cfg.AckWait.D() / 3)
		defer keep.Stop()
		for {
			select {
			case work <- cur:
				cur = nil
				return true
			case <-keep.C:
				for _, d := range slices.Concat(cur.deliveries, next) {
					_ = d.InProgress()
				}
			case <-ctx.Done():
				cur.giveBack()
				queue.GiveBack(next)
				return false
			}
		}
	}
	for {
		wait := time.Second
		if cur != nil {
			wait = max(time.Until(lingerEnd), time.Millisecond)
		}
		ds, err := cons.FetchReady(ctx, fetchAtOnce, wait)
		switch {
		case ctx.Err() != nil:
			if cur != nil {
				cur.giveBack()
			}
			queue.GiveBack(ds)
			return nil
		case errors.Is(err, queue.ErrNoMessage):
			if cur != nil && !time.Now().Before(lingerEnd) && !dispatch(nil) {
				return nil
			}
			continue
		case err != nil:
			return fmt.Errorf("sink %q: %w", s.cfg.Name, err)
		}
		for i, d := range ds {
			if cur == nil {
				cur = &request{body: s.newBody()}
				lingerEnd = time.Now().Add(s.cfg.Linger.D())
			}
			if err := s.add(ctx, cur, d); err != nil {
				queue.GiveBack(ds[i+1:])
				return err
			}
			if len(cur.events) >= s.cfg.BatchEvents || cur.bytes >= int(s.cfg.BatchBytes) {
				if !dispatch(ds[i+1:]) {
					return nil
				}
			}
		}
	}
}

// fetchAtOnce bounds the deliveries the sink takes per pull: most of a
// request's worth (1 MiB is ~800 audit events at ~40 a batch), only ever
// ones already waiting (queue.Consumer.FetchReady).
const fetchAtOnce = 16

func (s *Sink) newBody() []byte {
	if b, ok := s.bodies.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, int(s.cfg.BatchBytes)+64<<10)
}

// recycle keeps a delivered request's body for a later request; nothing
// refers to it any more (the DLQ is given the OUT records, not the events).
func (s *Sink) recycle(r *request) {
	if !*s.cfg.Gzip {
		return
	}
	body := r.body[:0]
	r.body, r.events = nil, nil
	s.bodies.Put(&body)
}

// add renders a delivery's records into r. A record that cannot be rendered
// can never be delivered: it goes to the DLQ at once.
func (s *Sink) add(ctx context.Context, r *request, d *queue.Delivery) error {
	r.deliveries = append(r.deliveries, d)
	if ft := d.Meta().FetchedAt; !ft.IsZero() && (r.oldest.IsZero() || ft.Before(r.oldest)) {
		r.oldest = ft
	}
	records, err := batch.Decode(d.Data)
	if err != nil {
		return s.q.DeadLetterBatch(ctx, "sink", s.cfg.Name, d, "not a record batch: "+err.Error())
	}
	replay, encoded := d.Meta().Replay, d.Meta().Encoded
	var bad []queue.DeadRecord
	for i, rec := range records {
		start, before := len(r.body), cap(r.body)
		var err error
		r.body, err = s.render(r.body, rec, replay, encoded)
		if err != nil {
			r.body = r.body[:start]
			bad = append(bad, s.dead(d, batch.RecordID(d.ID, i), rec, err.Error()))
			continue
		}
		r.moved = r.moved || cap(r.body) != before
		r.events = append(r.events, event{body: r.body[start:len(r.body):len(r.body)], index: i, record: rec, from: d})
		r.bytes += len(r.body) - start
	}
	if len(bad) > 0 {
		if err := s.q.DeadLetter(ctx, bad); err != nil {
			return fmt.Errorf("sink %q: %w", s.cfg.Name, err)
		}
		s.m.dlq.Add(float64(len(bad)))
	}
	return nil
}

func (s *Sink) dead(d *queue.Delivery, id string, rec []byte, reason string) queue.DeadRecord {
	return queue.DeadRecord{Stage: queue.StageSink, Name: s.cfg.Name, RecordID: id, Reason: reason, Origin: d.Subject, Meta: d.Meta(), Data: rec}
}

// deliver sends a request until every event is accepted or dead-lettered,
// then acks its batches. It gives up only when the node stops; the batches
// then go back to JetStream unacked.
func (s *Sink) deliver(ctx context.Context, h *actors.Health, r *request) {
	s.hold(r)
	defer s.release(r)
	defer s.recycle(r)
	stopKeepAlive := s.keepAlive(r)
	ok := s.sendAll(ctx, h, r, r.events)
	stopKeepAlive() // before the batches are acked or given back
	if !ok {
		r.giveBack()
		return
	}
	now := time.Now()
	s.ackAll(ctx, r.deliveries)
	for _, d := range r.deliveries {
		if ft := d.Meta().FetchedAt; !ft.IsZero() {
			s.m.delivery.Observe(now.Sub(ft).Seconds())
		}
	}
}

// ackAll acks a sent request's batches and waits until JetStream confirms
// each ack (in a cluster: stored by a quorum). The sender takes no new
// request before that, so a node cut off from the quorum, whose acks are
// never confirmed, has sent at most one request per sender that the
// majority will send again: in_flight × batch_events events, the
// duplicate bound of a failover. It stops waiting when the node stops or
// pauses, or after ack_wait, when the batch is due again anyway.
func (s *Sink) ackAll(ctx context.Context, ds []*queue.Delivery) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckWait.D())
	defer cancel()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				actx, done := context.WithTimeout(ctx, ackConfirmWait)
				err := d.AckSync(actx)
				done()
				if err == nil {
					return
				}
				if !actors.Sleep(ctx, 200*time.Millisecond) {
					s.log.Warn("ack not confirmed (no quorum?); the batch may be delivered again", "batch", d.ID, "err", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// ackConfirmWait bounds one try of an ack's confirmation; a try is repeated
// (acks are idempotent) when a new consumer leader missed it.
const ackConfirmWait = 5 * time.Second

// sendAll delivers events, splitting around refused ones. False when ctx ended.
func (s *Sink) sendAll(ctx context.Context, h *actors.Health, r *request, events []event) bool {
	fails := 0
	// The request's payload is made (and compressed) once for a set of
	// events, made again only when events changes: while Splunk is down,
	// every retry compressing it again cost a twentieth of a core per
	// request held.
	var encoded *payload
	defer func() {
		if encoded != nil {
			encoded.release()
		}
	}()
	for len(events) > 0 {
		if !s.whileAcksOff(ctx) {
			return false
		}
		if encoded == nil {
			body := r.body
			if r.moved || len(events) != len(r.events) {
				body = make([]byte, 0, r.bytes)
				for _, e := range events {
					body = append(body, e.body...)
				}
			}
			encoded = s.hec.encode(body)
		}
		start := time.Now()
		// A request under way finishes even when the node stops (bounded by
		// the request timeout), so what Splunk took is acked, not sent twice.
		res := s.hec.post(context.WithoutCancel(ctx), encoded)
		s.m.latency.Observe(time.Since(start).Seconds())
		out := classify(res)
		if ctx.Err() != nil && out != accepted {
			return false
		}
		switch out {
		case accepted:
			if s.cfg.Ack {
				switch s.waitIndexed(ctx, res) {
				case stopped:
					return false
				case acksOff:
					// HEC took the events but will never say they are
					// indexed: sending them again would only copy them.
					s.accepted(h, events)
					s.pauseForAcksOff(h, res)
					return true
				case notIndexed:
					s.m.retries.WithLabelValues("ack_timeout").Inc()
					s.m.state.Set(stateRetrying)
					fails++
					backoff := backoffFor(fails, s.cfg.MaxBackoff.D())
					s.log.Warn("HEC took the request but did not say it was indexed in time; sending it again", "ack_timeout", s.cfg.AckTimeout.String(), "attempt", fails, "next_in", backoff)
					h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s took a request but did not say it was indexed within ack_timeout (%s); retrying", s.cfg.URL, s.cfg.AckTimeout))
					if !s.wait(ctx, backoff) {
						return false
					}
					continue
				}
			}
			s.accepted(h, events)
			return true
		case badEvent:
			s.m.requests.WithLabelValues("bad_event").Inc()
			n := res.reply.InvalidNum
			if n != nil && *n >= 0 && *n < len(events) {
				// Splunk indexed the events before the bad one.
				s.accepted(h, events[:*n])
				if !s.deadLetter(ctx, events[*n], res) {
					return false
				}
				events = events[*n+1:]
				encoded.release()
				encoded = nil
				continue
			}
			if len(events) == 1 {
				return s.deadLetter(ctx, events[0], res)
			}
			half := len(events) / 2
			return s.sendAll(ctx, h, r, events[:half]) && s.sendAll(ctx, h, r, events[half:])
		case tooLarge:
			s.m.requests.WithLabelValues("too_large").Inc()
			if len(events) == 1 {
				return s.deadLetter(ctx, events[0], res)
			}
			half := len(events) / 2
			return s.sendAll(ctx, h, r, events[:half]) && s.sendAll(ctx, h, r, events[half:])
		case pause:
			s.m.requests.WithLabelValues("refused").Inc()
			s.m.state.Set(statePaused)
			h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s %s (%s); paused, retrying every %s", s.cfg.URL, pausedWhy(res), res, s.cfg.PausedRetry))
			s.log.Error("HEC refused the sink; paused", "answer", res.String(), "retry_every", s.cfg.PausedRetry.String())
			if !s.wait(ctx, s.cfg.PausedRetry.D()) {
				return false
			}
		case retry:
			s.m.requests.WithLabelValues("retry").Inc()
			s.m.retries.WithLabelValues(retryReason(res)).Inc()
			s.m.state.Set(stateRetrying)
			fails++
			backoff := backoffFor(fails, s.cfg.MaxBackoff.D())
			if fails == 1 || fails%10 == 0 {
				s.log.Warn("HEC unavailable; holding the batch and retrying", "answer", res.String(), "attempt", fails, "next_in", backoff)
			}
			h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s unavailable (%s); retrying", s.cfg.URL, res))
			if !s.wait(ctx, backoff) {
				return false
			}
		}
	}
	return true
}

func (s *Sink) accepted(h *actors.Health, events []event) {
	if len(events) == 0 {
		return
	}
	n := 0
	for _, e := range events {
		n += len(e.body)
	}
	s.m.events.Add(float64(len(events)))
	s.m.bytes.Add(float64(n))
	s.m.requests.WithLabelValues("accepted").Inc()
	s.m.state.Set(stateUp)
	h.SetHealthy()
}

func (s *Sink) deadLetter(ctx context.Context, e event, res result) bool {
	reason := fmt.Sprintf("Splunk HEC refused the event: %s", res)
	for fails := 1; ; fails++ {
		err := s.q.DeadLetter(ctx, []queue.DeadRecord{s.dead(e.from, e.recordID(), e.record, reason)})
		if err == nil {
			s.m.dlq.Inc()
			s.log.Warn("event refused by HEC; sent to the DLQ", "record", e.recordID(), "answer", res.String())
			return true
		}
		s.log.Error("dead-lettering failed; retrying", "record", e.recordID(), "err", err)
		if !s.wait(ctx, backoffFor(fails, s.cfg.MaxBackoff.D())) {
			return false
		}
	}
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
		if !s.wait(ctx, backoffFor(polls, ackPollMax)) {
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
func (s *Sink) pauseForAcksOff(h *actors.Health, res result) {
	s.noAcks.Store(true)
	s.m.state.Set(statePaused)
	h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s: the token has indexer acknowledgement off: set ack: false, or turn useACK on for the token; paused (what HEC took is counted as received, not indexed), asking again every %s", s.cfg.URL, s.cfg.PausedRetry))
	s.log.Error("the HEC token has indexer acknowledgement off but the sink has ack: true; paused: set ack: false, or turn useACK on for the token", "answer", res.String(), "retry_every", s.cfg.PausedRetry.String())
}

// whileAcksOff holds the sender, sending nothing, while the token is known
// to have indexer acknowledgement off. Every PausedRetry it asks the ack
// endpoint, which takes no events, whether acknowledgement is on again.
// False when ctx ended.
func (s *Sink) whileAcksOff(ctx context.Context) bool {
	for s.noAcks.Load() {
		if !s.wait(ctx, s.cfg.PausedRetry.D()) {
			return false
		}
		if _, res := s.hec.acked(ctx, 0); res.err == nil && res.status == http.StatusOK {
			s.noAcks.Store(false)
			s.log.Info("HEC indexer acknowledgement is on again; the sink resumes")
		}
	}
	return true
}

// keepAlive keeps r's batches leased (InProgress every AckWait/3) for as
// long as a sender works on r: one post can outlast AckWait (the timeout,
// then retryablehttp's own retries), so can polling for indexer acks and
// backoff, and JetStream would meanwhile hand the batches to another
// sender (copies, and deliveries counted towards MaxDeliveries). Its own
// goroutine, as the sender is blocked in the post. stop returns when the
// goroutine has ended, so that the sender may then ack or give back.
func (s *Sink) keepAlive(r *request) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(s.cfg.AckWait.D() / 3)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				for _, d := range r.deliveries {
					_ = d.InProgress()
				}
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-ended }
}

// wait sleeps d; the request's batches stay leased meanwhile (keepAlive).
func (s *Sink) wait(ctx context.Context, d time.Duration) bool {
	return actors.Sleep(ctx, d)
}

// checkHealth asks HEC's health endpoint once at start, to report a wrong
// URL or a refused token before the first batch.
func (s *Sink) checkHealth(ctx context.Context, h *actors.Health) {
	res := s.hec.health(ctx)
	if res.err != nil || res.status != 200 || !res.hec {
		s.log.Warn("HEC health check failed; batches will wait in OUT", "answer", res.String())
		h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s: health check: %s", s.cfg.URL, res))
		s.m.state.Set(stateRetrying)
		return
	}
	s.m.state.Set(stateUp)
}

func (s *Sink) hold(r *request) {
	s.heldMu.Lock()
	s.held[r] = r.oldest
	s.heldMu.Unlock()
}

func (s *Sink) release(r *request) {
	s.heldMu.Lock()
	delete(s.held, r)
	s.heldMu.Unlock()
}

func (s *Sink) oldestHeldSeconds() float64 {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	oldest := time.Time{}
	for _, t := range s.held {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest).Seconds()
}

// pausedWhy says in a few words why an answer pauses the sink.
func pausedWhy(r result) string {
	switch {
	case r.redirect():
		return "is not at this url"
	case !r.hec:
		return "answers, but not as HEC (a proxy, or the wrong url?)"
	}
	return "refuses the sink"
}

func retryReason(r result) string {
	switch {
	case r.err != nil:
		return "network"
	case r.reply.Code > 0:
		return "hec_code_" + strconv.Itoa(r.reply.Code)
	}
	return "http_" + strconv.Itoa(r.status)
}

// backoffFor is 100ms·2^(n-1) capped at max, with jitter from half to full.
func backoffFor(n int, maxWait time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
