package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stored is one message kept in a stream, as a replay or a DLQ walk sees it.
type Stored struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Header  nats.Header
	Data    []byte // empty when scanned with HeadersOnly
	Size    int    // of the body, also when only the headers were read
}

// ScanOptions select the stored messages of a walk.
type ScanOptions struct {
	Stream  string
	Subject string    // filter; default every subject of the stream
	From    time.Time // first store time; zero for the oldest kept
	// FromSeq, when set, starts the walk at this sequence instead (a walk
	// taken up again after ErrScanGap).
	FromSeq uint64
	// UpToSeq ends the walk; 0 means the stream's last sequence when the
	// walk starts, so messages published during it are not visited.
	UpToSeq     uint64
	HeadersOnly bool
}

// scanIdle is how long a walk waits for a message before asking the
// stream whether anything more is stored in its range.
const scanIdle = 2 * time.Second

// ErrScanGap is a walk that got no message for scanIdle although the
// stream still holds some in its range (a stream leader changing, a slow
// replica): the walk stopped short and should be taken up again from
// ScanGapError.Next, never read as the end of the range.
var ErrScanGap = errors.New("queue: the walk stopped short of its range")

// ScanGapError says where a walk stopped short.
type ScanGapError struct {
	Stream, Subject string
	Next            uint64 // the first sequence not visited
	UpTo            uint64
}

func (e *ScanGapError) Error() string {
	return fmt.Sprintf("queue: reading %s %s: no message for %s although sequences %d–%d hold more", e.Stream, e.Subject, scanIdle, e.Next, e.UpTo)
}

func (e *ScanGapError) Is(target error) bool { return target == ErrScanGap }

// orderedConfig is the ordered consumer that reads o's range from its start.
func (o ScanOptions) orderedConfig() jetstream.OrderedConsumerConfig {
	cfg := jetstream.OrderedConsumerConfig{HeadersOnly: o.HeadersOnly, DeliverPolicy: jetstream.DeliverAllPolicy}
	if o.Subject != "" {
		cfg.FilterSubjects = []string{o.Subject}
	}
	switch {
	case o.FromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.FromSeq
	case !o.From.IsZero():
		from := o.From
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
	}
	return cfg
}

// Scan calls fn for each stored message of o in order, until fn returns
// false or an error, or the range ends. It reads through an ephemeral
// ordered consumer, which holds nothing back from the trimmer.
func (q *Queue) Scan(ctx context.Context, o ScanOptions, fn func(Stored) (bool, error)) error {
	s, err := q.js.Stream(ctx, o.Stream)
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", o.Stream, err)
	}
	upTo := o.UpToSeq
	if upTo == 0 {
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("queue: stream %s: %w", o.Stream, err)
		}
		upTo = info.State.LastSeq
		if info.State.Msgs == 0 {
			return nil
		}
	}
	oc, err := q.js.OrderedConsumer(ctx, o.Stream, o.orderedConfig())
	if err != nil {
		return fmt.Errorf("queue: reading %s: %w", o.Stream, err)
	}
	defer q.dropOrdered(o.Stream, oc)
	it, err := oc.Messages(jetstream.PullMaxBytes(q.pullBytes()))
	if err != nil {
		return fmt.Errorf("queue: reading %s: %w", o.Stream, err)
	}
	defer it.Stop()
	next := o.FromSeq // the first sequence not visited yet; 0: from the start
	for {
		wait, cancel := context.WithTimeout(ctx, scanIdle)
		m, err := it.Next(jetstream.NextContext(wait))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				// Silence is the end of the range only when the stream
				// says so: a leader change also reads as silence.
				more, err := q.storedInRange(ctx, o, next, upTo)
				if err != nil {
					return fmt.Errorf("queue: reading %s: no message for %s, and no answer whether more is stored: %w", o.Stream, scanIdle, err)
				}
				if more {
					return &ScanGapError{Stream: o.Stream, Subject: o.Subject, Next: max(next, 1), UpTo: upTo}
				}
				return nil
			}
			return fmt.Errorf("queue: reading %s: %w", o.Stream, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("queue: reading %s: %w", o.Stream, err)
		}
		if md.Sequence.Stream > upTo {
			return nil
		}
		next = md.Sequence.Stream + 1
		st := Stored{Seq: md.Sequence.Stream, Subject: m.Subject(), Time: md.Timestamp, Header: m.Headers(), Data: m.Data(), Size: len(m.Data())}
		if o.HeadersOnly {
			st.Size, _ = strconv.Atoi(st.Header.Get(msgSizeHeader))
		}
		more, err := fn(st)
		if err != nil || !more {
			return err
		}
		if md.NumPending == 0 || md.Sequence.Stream == upTo {
			return nil
		}
	}
}

// storedInRange asks the stream leader whether a message of o's subject
// is stored at or after next (or o.From when the walk has seen none) and
// at or below upTo.
func (q *Queue) storedInRange(ctx context.Context, o ScanOptions, next, upTo uint64) (bool, error) {
	subj := o.Subject
	if subj == "" {
		subj = ">"
	}
	req := server.JSApiMsgGetRequest{NextFor: subj, NoHeaders: true, Seq: next}
	if next == 0 {
		req.Seq = 1
		if !o.From.IsZero() {
			from := o.From
			req.Seq, req.StartTime = 0, &from
		}
	}
	m, err := q.msgGet(ctx, o.Stream, req)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return m.Sequence <= upTo, nil
}

// GetStored reads one message by its sequence.
func (q *Queue) GetStored(ctx context.Context, stream string, seq uint64) (*Stored, error) {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("queue: %s message %d: %w", stream, seq, err)
	}
	return &Stored{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Header: m.Header, Data: m.Data, Size: len(m.Data)}, nil
}

// DeleteStored removes one message (a re-driven or purged DLQ record).
func (q *Queue) DeleteStored(ctx context.Context, stream string, seq uint64) error {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("queue: delete %s message %d: %w", stream, seq, err)
	}
	return nil
}

// PurgeStream removes every message of a stream.
func (q *Queue) PurgeStream(ctx context.Context, stream string) error {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	if err := s.Purge(ctx); err != nil {
		return fmt.Errorf("queue: purge %s: %w", stream, err)
	}
	return nil
}

// AckFloor is the stream sequence up to which a durable consumer has acked
// everything: what that stage has delivered.
func (q *Queue) AckFloor(ctx context.Context, stream, durable string) (uint64, error) {
	c, err := q.js.Consumer(ctx, stream, durable)
	if err != nil {
		return 0, fmt.Errorf("queue: consumer %s on %s: %w", durable, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("queue: consumer %s on %s: %w", durable, stream, err)
	}
	return info.AckFloor.Stream, nil
}

// StreamInfo is the state and configuration of a stream.
func (q *Queue) StreamInfo(ctx context.Context, stream string) (*jetstream.StreamInfo, error) {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	return info, nil
}

// ConsumerInfos lists the durable consumers of a stream.
func (q *Queue) ConsumerInfos(ctx context.Context, stream string) ([]*jetstream.ConsumerInfo, error) {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	var out []*jetstream.ConsumerInfo
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable != "" {
			out = append(out, ci)
		}
	}
	return out, lister.Err()
}

// OldestAfter is the store time of the first message on subject after seq
// (the oldest one a consumer with that ack floor has not delivered), or
// false when there is none.
func (q *Queue) OldestAfter(ctx context.Context, stream, subject string, seq uint64) (time.Time, bool, error) {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	if subject == "" {
		subject = ">"
	}
	m, err := s.GetMsg(ctx, seq+1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("queue: %s after %d: %w", stream, seq, err)
	}
	return m.Time, true, nil
}

// msgSizeHeader carries the body size of a message read headers-only.
const msgSizeHeader = "Nats-Msg-Size"

// SubjectCounts is the number of messages per subject of a stream.
func (q *Queue) SubjectCounts(ctx context.Context, stream string) (map[string]uint64, error) {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	return info.State.Subjects, nil
}

// dropOrdered deletes an ordered consumer that is done: the server would
// otherwise keep it, with three goroutines, for its 5-minute inactivity
// threshold — and every scan makes one.
func (q *Queue) dropOrdered(stream string, oc jetstream.Consumer) {
	info := oc.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.js.DeleteConsumer(ctx, stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		q.log.Debug("deleting a finished reader failed; the server drops it when idle", "stream", stream, "err", err)
	}
}

// PendingAfter is how many messages on subject are stored after seq: what
// a reader whose ack floor is seq has still to take. It asks through a
// short-lived ephemeral consumer, which holds nothing back from the trimmer.
func (q *Queue) PendingAfter(ctx context.Context, stream, subject string, seq uint64) (uint64, error) {
	c, err := q.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubject: subject, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1,
		AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, fmt.Errorf("queue: counting %s %s after %d: %w", stream, subject, seq, err)
	}
	defer q.dropOrdered(stream, c)
	info := c.CachedInfo()
	if info == nil {
		return 0, fmt.Errorf("queue: counting %s %s after %d: no consumer info", stream, subject, seq)
	}
	return info.NumPending, nil
}

// PurgeSubject removes the messages on subject below the sequence below
// (every one of them when below is 0).
func (q *Queue) PurgeSubject(ctx context.Context, stream, subject string, below uint64) error {
	s, err := q.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	opts := []jetstream.StreamPurgeOpt{jetstream.WithPurgeSubject(subject)}
	if below > 0 {
		opts = append(opts, jetstream.WithPurgeSequence(below))
	}
	if err := s.Purge(ctx, opts...); err != nil {
		return fmt.Errorf("queue: purge %s %s below %d: %w", stream, subject, below, err)
	}
	return nil
}

// DeleteConsumer removes a durable consumer; one already gone is no error.
func (q *Queue) DeleteConsumer(ctx context.Context, stream, name string) error {
	if err := q.js.DeleteConsumer(ctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("queue: delete consumer %s on %s: %w", name, stream, err)
	}
	return nil
}
