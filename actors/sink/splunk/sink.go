package splunk

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/sink"
)

// Deps are what a sink is given.
type Deps = sink.Deps

// Sink is one Splunk HEC sink actor: the runner (actors/sink) fetches,
// gathers, bounds and acks; the sink renders and posts.
type Sink struct {
	cfg      *Config
	defaults defaults
	run      *sink.Runner
	log      *slog.Logger
	hec      *hecClient
	m        *metrics
	h        *actors.Health // of the running Run

	// noAcks is set when HEC said the token has indexer acknowledgement
	// off: every write then holds its request until it is on again. An
	// atomic, as the writes are goroutines of their own.
	noAcks atomic.Bool

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
	run, err := sink.New(sink.Options{
		Name: cfg.Name, AckWait: cfg.AckWait.D(), FetchAtOnce: fetchAtOnce,
		BatchRecords: cfg.BatchEvents, BatchBytes: int(cfg.BatchBytes), Linger: cfg.Linger.D(),
		InFlight: cfg.InFlight, ConfirmAcks: true, MinBackoff: 100 * time.Millisecond, MaxBackoff: cfg.MaxBackoff.D(),
	}, deps)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, defaults: newDefaults(cfg), run: run, log: run.Log()}
	if s.hec, err = newHECClient(cfg, s.log); err != nil {
		return nil, fmt.Errorf("sink %q: %w", cfg.Name, err)
	}
	if s.m, err = newMetrics(run.Registry(), run.M); err != nil {
		return nil, fmt.Errorf("sink %q: metrics: %w", cfg.Name, err)
	}
	return s, nil
}

// fetchAtOnce bounds the deliveries the sink takes per pull: most of a
// request's worth (1 MiB is ~800 audit events at ~40 a batch), only ever
// ones already waiting (queue.Consumer.FetchReady).
const fetchAtOnce = 16

// Run asks HEC's health once, then runs the sink until ctx ends.
func (s *Sink) Run(ctx context.Context, h *actors.Health) error {
	s.h = h
	s.checkHealth(ctx, h)
	return s.run.Run(ctx, s)
}

// request is one HEC POST's worth of events, from one or more OUT batches
// (the state of a sink.Batch).
type request struct {
	events []event
	bytes  int
	// body holds the events rendered one after another: sent as it is
	// when Splunk takes them all (the usual case), no copy. Each event's
	// body is a slice of it (of an older array if body had to grow).
	body  []byte
	moved bool // body grew into a new array: events no longer slice it
	// enc is the payload made (and compressed) for the events of encFor,
	// made again only when they change: while Splunk is down, every retry
	// compressing it again cost a twentieth of a core per request held.
	enc    *payload
	encFor []int
}

type event struct {
	body []byte // the rendered HEC event
	rec  sink.Record
	n    int // its place in request.events
}

// Prepare renders a delivery's records into the batch's request. A record
// that cannot be rendered can never be delivered: it goes to the DLQ.
func (s *Sink) Prepare(b *sink.Batch, d *sink.Delivery) int {
	r, _ := b.State.(*request)
	if r == nil {
		r = &request{body: s.newBody()}
		b.State = r
	}
	meta := d.Meta()
	replay, encoded := meta.Replay, meta.Encoded
	before := r.bytes
	for i, rec := range d.Records {
		start, capBefore := len(r.body), cap(r.body)
		var err error
		r.body, err = s.render(r.body, rec, replay, encoded)
		if err != nil {
			r.body = r.body[:start]
			d.End(i, err.Error())
			continue
		}
		r.moved = r.moved || cap(r.body) != capBefore
		r.events = append(r.events, event{body: r.body[start:len(r.body):len(r.body)], rec: sink.Record{D: d, I: i}, n: len(r.events)})
		r.bytes += len(r.body) - start
	}
	return r.bytes - before
}

// Write posts the request's events that have not ended, once.
func (s *Sink) Write(ctx context.Context, b *sink.Batch) time.Duration {
	r := b.State.(*request)
	var events []event
	for _, e := range r.events {
		if !e.rec.Ended() {
			events = append(events, e)
		}
	}
	wait := s.send(ctx, b, r, events)
	if ctx.Err() != nil || s.left(r) == 0 {
		s.recycle(r)
	}
	return wait
}

func (s *Sink) left(r *request) int {
	n := 0
	for _, e := range r.events {
		if !e.rec.Ended() {
			n++
		}
	}
	return n
}

func (s *Sink) newBody() []byte {
	if b, ok := s.bodies.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, int(s.cfg.BatchBytes)+64<<10)
}

// recycle lets go of a request's payload and keeps its body for a later
// request; nothing refers to it any more (the DLQ is given the OUT
// records, not the events).
func (s *Sink) recycle(r *request) {
	if r.enc != nil {
		r.enc.release()
		r.enc, r.encFor = nil, nil
	}
	if !*s.cfg.Gzip || r.body == nil {
		return
	}
	body := r.body[:0]
	r.body, r.events = nil, nil
	s.bodies.Put(&body)
}

// checkHealth asks HEC's health endpoint once at start, to report a wrong
// URL or a refused token before the first batch.
func (s *Sink) checkHealth(ctx context.Context, h *actors.Health) {
	res := s.hec.health(ctx)
	if res.err != nil || res.status != 200 || !res.hec {
		s.log.Warn("HEC health check failed; batches will wait in OUT", "answer", res.String())
		h.SetUnhealthy(fmt.Sprintf("Splunk HEC at %s: health check: %s", s.cfg.URL, res))
		s.m.State.Set(sink.StateRetrying)
		return
	}
	s.m.State.Set(sink.StateUp)
}

// whileAcksOff holds the write, sending nothing, while the token is known
// to have indexer acknowledgement off. Every PausedRetry it asks the ack
// endpoint, which takes no events, whether acknowledgement is on again.
// False when ctx ended.
func (s *Sink) whileAcksOff(ctx context.Context) bool {
	for s.noAcks.Load() {
		if !actors.Sleep(ctx, s.cfg.PausedRetry.D()) {
			return false
		}
		if _, res := s.hec.acked(ctx, 0); res.err == nil && res.status == http.StatusOK {
			s.noAcks.Store(false)
			s.log.Info("HEC indexer acknowledgement is on again; the sink resumes")
		}
	}
	return true
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
