package ops

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// ReplayRequest asks to send a window of records to a sink again.
type ReplayRequest struct {
	Sink string    `json:"sink"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// ThroughTransform re-runs the current policies on the RAW records of
	// the window instead of re-sending what the sink already got.
	ThroughTransform bool `json:"through_transform,omitempty"`
	// Source limits a replay through the transform to one source.
	Source string `json:"source,omitempty"`
	// Rate caps records per second; 0 sends as fast as the buffer takes them.
	Rate   float64 `json:"rate,omitempty"`
	DryRun bool    `json:"dry_run,omitempty"`
}

// ReplayPlan is what a replay would send.
type ReplayPlan struct {
	Sink     string    `json:"sink"`
	Stream   string    `json:"stream"`
	Subject  string    `json:"subject"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Messages int       `json:"messages"`
	Count
	// UpToSeq is the delivering stage's ack floor: later records were not
	// delivered yet and are left to the stage itself.
	UpToSeq uint64 `json:"up_to_seq"`
}

// RefusedError is a request that cannot be carried out as asked.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

func refused(format string, args ...any) error { return &RefusedError{fmt.Sprintf(format, args...)} }

// replayTarget checks a replay request and says what it reads: the
// stream, the subject filter and the durable whose ack floor bounds it.
func (m *Manager) replayTarget(req ReplayRequest) (*ReplayPlan, string, error) {
	if _, ok := m.sink(req.Sink); !ok {
		return nil, "", refused("sink %q is not configured (sinks: %v)", req.Sink, names(m.deps.Sinks))
	}
	if req.From.IsZero() || req.To.IsZero() || !req.From.Before(req.To) {
		return nil, "", refused("the window needs from < to (got from %s, to %s)", stamp(req.From), stamp(req.To))
	}
	if req.Rate < 0 {
		return nil, "", refused("rate must not be negative")
	}
	p := &ReplayPlan{Sink: req.Sink, Stream: queue.StreamOut, Subject: queue.OutSubject(req.Sink), From: req.From, To: req.To}
	durable := "sink-" + req.Sink
	if req.ThroughTransform {
		p.Stream, p.Subject, durable = queue.StreamRaw, "raw.>", "transform"
		if req.Source != "" {
			p.Subject = queue.RawSubject(req.Source)
		}
	} else if req.Source != "" {
		return nil, "", refused("source applies only with through_transform (OUT records are per sink, not per source)")
	}
	return p, durable, nil
}

// PlanReplay checks a replay request and counts what it would send.
func (m *Manager) PlanReplay(ctx context.Context, req ReplayRequest) (*ReplayPlan, error) {
	p, durable, err := m.replayTarget(req)
	if err != nil {
		return nil, err
	}
	gone, err := m.deps.Queue.TrimmedBefore(ctx, p.Stream, p.Subject)
	if err != nil {
		return nil, err
	}
	if !gone.IsZero() && req.From.Before(gone) {
		if !req.To.After(gone) {
			return nil, refused("the whole window %s – %s is gone from %s (%s): records stored before %s were trimmed "+
				"(delivered and older than queue.retain_delivered, or removed early when the buffer ran short of space); nothing to replay",
				stamp(req.From), stamp(req.To), p.Stream, p.Subject, stamp(gone))
		}
		return nil, refused("part of the window is gone from %s (%s): %s – %s was trimmed "+
			"(delivered and older than queue.retain_delivered, or removed early when the buffer ran short of space); "+
			"%s – %s is retained: ask for --from %s to replay that part",
			p.Stream, p.Subject, stamp(req.From), stamp(gone), stamp(gone), stamp(req.To), stamp(ceilSecond(gone)))
	}
	p.UpToSeq, err = m.deps.Queue.AckFloor(ctx, p.Stream, durable)
	if err != nil {
		return nil, fmt.Errorf("replay: what %s delivered: %w", durable, err)
	}
	if p.UpToSeq == 0 {
		return p, nil
	}
	err = m.deps.Queue.Scan(ctx, queue.ScanOptions{Stream: p.Stream, Subject: p.Subject, From: req.From, UpToSeq: p.UpToSeq, HeadersOnly: true},
		func(s queue.Stored) (bool, error) {
			if s.Time.After(req.To) {
				return false, nil
			}
			if s.Header.Get(batch.HeaderReplay) == "" {
				p.Messages++
				p.Records += int64(recordCount(s.Header))
				p.Bytes += int64(s.Size)
			}
			return true, nil
		})
	if err != nil {
		return nil, fmt.Errorf("replay: counting the window: %w", err)
	}
	return p, nil
}

// Replay starts a replay job, or with DryRun only plans it.
//
// The job holds its window against the trimmer (queue.HoldWindow) from
// before it is counted until it ends, so a stream short of space does not
// lose the records it is about to send. Whatever still goes (a node that
// does not honour holds, a purge by hand) is found at the end: a job that
// sent less than it planned ends partial, saying what is missing.
func (m *Manager) Replay(ctx context.Context, req ReplayRequest) (*ReplayPlan, *Job, error) {
	if req.DryRun {
		p, err := m.PlanReplay(ctx, req)
		return p, nil, err
	}
	target, _, err := m.replayTarget(req)
	if err != nil {
		return nil, nil, err
	}
	id := newJobID(KindReplay)
	hold, err := m.deps.Queue.HoldWindow(ctx, id, queue.HoldSpec{Stream: target.Stream, Subject: target.Subject, From: req.From})
	if err != nil {
		return nil, nil, fmt.Errorf("replay: holding the window against the trimmer: %w", err)
	}
	// Counted under the hold: what the plan counts stays until the job ends.
	p, err := m.PlanReplay(ctx, req)
	if err != nil {
		hold.Release()
		return nil, nil, err
	}
	j := m.startID(id, KindReplay, req, p.Count, func(ctx context.Context, j *Job) error {
		defer hold.Release()
		sent, err := m.replay(ctx, j, req, p)
		if err != nil {
			return err
		}
		return m.replayShort(ctx, j, req, p, sent)
	})
	return p, j, nil
}

// replayShort is nil when the job sent every record it planned, else the
// error that ends it partial, naming what is missing and why when known.
func (m *Manager) replayShort(ctx context.Context, j *Job, req ReplayRequest, p *ReplayPlan, sentBatches int) error {
	sent := j.records.Load()
	if sent >= p.Records && sentBatches >= p.Messages {
		return nil
	}
	msg := fmt.Sprintf("sent %d of %d planned records (%d of %d batches) from %s (%s): ", sent, p.Records, sentBatches, p.Messages, p.Stream, p.Subject)
	gone, err := m.deps.Queue.TrimmedBefore(ctx, p.Stream, p.Subject)
	switch {
	case err != nil:
		msg += fmt.Sprintf("the rest were no longer stored when the job reached them (the trim mark could not be read: %v)", err)
	case gone.After(req.From):
		msg += fmt.Sprintf("records stored %s – %s were trimmed while the job ran; replay --from %s for what is retained",
			stamp(req.From), stamp(gone), stamp(ceilSecond(gone)))
	default:
		msg += "the rest were no longer stored when the job reached them, though the trimmer marked nothing " +
			"(removed by hand on the NATS port, or by a node that does not honour replay holds)"
	}
	return &shortError{msg}
}

// replay copies every original message of the window with a new ID and the
// replay mark: to OUT for the sink, or to RAW for the transform, which then
// routes the copy's outputs to the asked sink only.
// It returns how many batches it sent. A walk that stops short of its
// range (queue.ErrScanGap: a leader change) is taken up again where it
// stopped, a few times, and fails the job rather than end it early.
func (m *Manager) replay(ctx context.Context, j *Job, req ReplayRequest, p *ReplayPlan) (int, error) {
	var limit *rate.Limiter
	if req.Rate > 0 {
		limit = rate.NewLimiter(rate.Limit(req.Rate), max(1, int(req.Rate)))
	}
	out := newPublisher(m, j)
	sent := 0
	opts := queue.ScanOptions{Stream: p.Stream, Subject: p.Subject, From: req.From, UpToSeq: p.UpToSeq}
	err := scanResuming(ctx, m.deps.Queue, opts, func(note string) { j.setNote(note) },
		func(s queue.Stored) (bool, error) {
			if s.Time.After(req.To) {
				return false, nil
			}
			if s.Header.Get(batch.HeaderReplay) != "" {
				return true, nil // a copy from an earlier replay
			}
			n := recordCount(s.Header)
			if err := waitRecords(ctx, limit, n); err != nil {
				return false, err
			}
			h := copyHeader(s, p.Stream, "replay/"+j.ID)
			h.Set(batch.HeaderReplay, j.ID)
			if req.ThroughTransform {
				h.Set(batch.HeaderReplaySink, req.Sink)
			}
			sent++
			return true, out.add(ctx, &nats.Msg{Subject: s.Subject, Header: h, Data: s.Data}, n, len(s.Data), nil)
		})
	if err == nil {
		err = out.flush(ctx)
	}
	return sent, err
}

// scanGapAttempts bounds how often a job takes a walk up again after it
// stopped short; the waits between double from 1 s.
const scanGapAttempts = 5

// scanResuming is queue.Scan, taken up again from where it stopped when
// the walk stops short of its range (queue.ErrScanGap).
func scanResuming(ctx context.Context, q *queue.Queue, o queue.ScanOptions, note func(string), fn func(queue.Stored) (bool, error)) error {
	wait := time.Second
	for attempt := 1; ; attempt++ {
		err := q.Scan(ctx, o, fn)
		var gap *queue.ScanGapError
		if !errors.As(err, &gap) {
			return err
		}
		if attempt >= scanGapAttempts {
			return fmt.Errorf("%w (after %d attempts)", err, attempt)
		}
		note(fmt.Sprintf("reading %s stopped short at sequence %d; taking it up again (%s)", o.Stream, gap.Next, err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
		o.FromSeq = gap.Next
	}
}

// waitRecords takes n records from the limiter, a burst at a time.
func waitRecords(ctx context.Context, l *rate.Limiter, n int) error {
	for l != nil && n > 0 {
		k := min(n, l.Burst())
		if err := l.WaitN(ctx, k); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		n -= k
	}
	return nil
}

// publisher sends a job's messages in groups, waiting for the buffer's acks,
// and runs each message's after-hook (a DLQ delete) once it is stored.
type publisher struct {
	m       *Manager
	j       *Job
	msgs    []*nats.Msg
	after   []func(context.Context) error
	records int
	bytes   int
	// stored, when set, runs once a group is stored and its after-hooks
	// ran (a move removes the group's originals, making room for the next).
	stored func(context.Context) error
}

func newPublisher(m *Manager, j *Job) *publisher { return &publisher{m: m, j: j} }

const publishGroupBytes = 8 << 20

func (p *publisher) add(ctx context.Context, msg *nats.Msg, records, bytes int, after func(context.Context) error) error {
	p.msgs = append(p.msgs, msg)
	if after != nil {
		p.after = append(p.after, after)
	}
	p.records += records
	p.bytes += bytes
	if len(p.msgs) >= 64 || p.bytes >= publishGroupBytes {
		return p.flush(ctx)
	}
	return nil
}

func (p *publisher) flush(ctx context.Context) error {
	if len(p.msgs) == 0 {
		return nil
	}
	for {
		err := p.m.deps.Queue.PublishMessages(ctx, p.msgs)
		if err == nil {
			break
		}
		if !errors.Is(err, queue.ErrBufferFull) {
			return err
		}
		// The buffer is full: wait for the sinks to make room, as a source would.
		p.j.setNote("waiting: the buffer is full")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	p.j.setNote("")
	for _, f := range p.after {
		if err := f(ctx); err != nil {
			return err
		}
	}
	if p.stored != nil {
		if err := p.stored(ctx); err != nil {
			return err
		}
	}
	p.m.progress(p.j, p.records, p.bytes)
	p.msgs, p.after, p.records, p.bytes = p.msgs[:0], p.after[:0], 0, 0
	return nil
}

// copyHeader is the header of a copy of the stored batch s: s's, with
// the message ID prefix/<s's message ID> (<stream>-<seq> for a batch
// stored without one), so the buffer stores each copy once however often
// a job sends it.
func copyHeader(s queue.Stored, stream, prefix string) nats.Header {
	// A shallow copy is enough: Set replaces a value's slice, so s's
	// stay as they are.
	h := maps.Clone(s.Header)
	if h == nil {
		h = nats.Header{}
	}
	orig := s.Header.Get(batch.HeaderMsgID)
	if orig == "" {
		orig = stream + "-" + strconv.FormatUint(s.Seq, 10)
	}
	h.Set(batch.HeaderMsgID, prefix+"/"+orig)
	return h
}

func recordCount(h nats.Header) int {
	n, err := strconv.Atoi(h.Get(batch.HeaderCount))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func names(cs []Component) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "(unset)"
	}
	return t.UTC().Format(time.RFC3339)
}

func ceilSecond(t time.Time) time.Time {
	if c := t.Truncate(time.Second); c.Before(t) {
		return c.Add(time.Second)
	}
	return t
}
