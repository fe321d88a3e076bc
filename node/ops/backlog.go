package ops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// A sink renamed or removed from the config leaves its backlog behind:
// the batches on out.<old> its consumer sink-<old> never delivered. No
// actor reads them, the trimmer never frees them (undelivered), and they
// eat the OUT budget. The same goes for RAW batches of a source no longer
// configured that the transform has not taken yet. Such a backlog is an
// orphan: status, /metrics and a warning at startup name it, and
// `sluice backlog move` or `drop` resolves it.

// KindMove is a job that moves an orphan backlog to a configured sink.
const KindMove = "move"

// Orphan is a backlog that belongs to no configured sink or source.
type Orphan struct {
	Stream   string `json:"stream"`
	Subject  string `json:"subject"`
	Consumer string `json:"consumer,omitempty"` // the durable that holds it, when there is one
	Kind     string `json:"kind"`               // sink or source
	Name     string `json:"name"`               // the sink or source it was for
	// Messages are the batches not delivered yet.
	Messages uint64    `json:"messages"`
	Oldest   time.Time `json:"oldest,omitzero"` // store time of the oldest of them
	Fix      string    `json:"fix"`             // the commands that resolve it
}

// Orphans lists every backlog of an unconfigured sink (OUT) or source
// (RAW), sinks first, by name.
func (m *Manager) Orphans(ctx context.Context) ([]Orphan, error) {
	out, err := m.orphanSinks(ctx)
	if err != nil {
		return nil, fmt.Errorf("orphans: %w", err)
	}
	raw, err := m.orphanSources(ctx)
	if err != nil {
		return nil, fmt.Errorf("orphans: %w", err)
	}
	out = append(out, raw...)
	sort.Slice(out, func(a, b int) bool {
		if out[a].Stream != out[b].Stream {
			return out[a].Stream == queue.StreamOut
		}
		return out[a].Subject < out[b].Subject
	})
	return out, nil
}

// orphanSinks finds the OUT backlogs: subjects out.<x> and consumers
// sink-<x> of sinks not configured.
func (m *Manager) orphanSinks(ctx context.Context) ([]Orphan, error) {
	q := m.deps.Queue
	counts, err := q.SubjectCounts(ctx, queue.StreamOut)
	if err != nil {
		return nil, err
	}
	cons, err := q.ConsumerInfos(ctx, queue.StreamOut)
	if err != nil {
		return nil, err
	}
	byName := map[string]*jetstream.ConsumerInfo{}
	names := map[string]bool{}
	for _, ci := range cons {
		byName[ci.Name] = ci
		if x, ok := strings.CutPrefix(ci.Name, "sink-"); ok {
			names[x] = true
		}
	}
	for subj := range counts {
		if x, ok := strings.CutPrefix(subj, "out."); ok {
			names[x] = true
		}
	}
	var out []Orphan
	for x := range names {
		if _, ok := m.sink(x); ok {
			continue
		}
		o := Orphan{Stream: queue.StreamOut, Subject: queue.OutSubject(x), Kind: "sink", Name: x}
		var floor uint64
		if ci := byName["sink-"+x]; ci != nil {
			o.Consumer, floor = ci.Name, ci.AckFloor.Stream
			o.Messages = ci.NumPending + uint64(ci.NumAckPending)
		} else {
			o.Messages = counts[o.Subject] // nobody delivered any of them
		}
		if o.Messages == 0 {
			continue
		}
		if t, ok, err := q.OldestAfter(ctx, o.Stream, o.Subject, floor); err == nil && ok {
			o.Oldest = t
		}
		o.Fix = fmt.Sprintf("sluice backlog move --from %s --to %s, or sluice backlog drop --sink %s", x, m.moveTarget(), x)
		out = append(out, o)
	}
	return out, nil
}

// orphanSources finds the RAW backlogs: subjects raw.<y> of sources not
// configured, with batches the transform has not taken yet.
func (m *Manager) orphanSources(ctx context.Context) ([]Orphan, error) {
	var out []Orphan
	var floor uint64
	var reader string // the transform's consumer, once a backlog asks for its ack floor
	q := m.deps.Queue
	raw, err := q.SubjectCounts(ctx, queue.StreamRaw)
	if err != nil {
		return nil, err
	}
	for subj := range raw {
		y, ok := strings.CutPrefix(subj, "raw.")
		if !ok || m.source(y) {
			continue
		}
		if reader == "" {
			reader = "transform"
			if floor, err = q.AckFloor(ctx, queue.StreamRaw, reader); err != nil {
				floor = 0 // no transform consumer yet: nothing of RAW is delivered
			}
		}
		n, err := q.PendingAfter(ctx, queue.StreamRaw, subj, floor)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		o := Orphan{Stream: queue.StreamRaw, Subject: subj, Consumer: reader, Kind: "source", Name: y, Messages: n,
			Fix: fmt.Sprintf("the transform takes it once it runs (its policies route it); or sluice backlog drop --source %s", y)}
		if t, ok, err := q.OldestAfter(ctx, o.Stream, o.Subject, floor); err == nil && ok {
			o.Oldest = t
		}
		out = append(out, o)
	}
	return out, nil
}

// moveTarget names the configured sink to suggest in a fix: the only one,
// or a placeholder.
func (m *Manager) moveTarget() string {
	if len(m.deps.Sinks) == 1 {
		return m.deps.Sinks[0].Name
	}
	return "<sink>"
}

func (m *Manager) source(name string) bool {
	for _, s := range m.deps.Sources {
		if s.Name == name {
			return true
		}
	}
	return false
}

// warnOrphans logs each orphan backlog once, at startup.
func (m *Manager) warnOrphans(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	orphans, err := m.Orphans(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.deps.Logger.Warn("could not look for backlogs of sinks or sources no longer configured", "err", err)
		}
		return
	}
	for _, o := range orphans {
		m.deps.Logger.Warn("a backlog belongs to no configured "+o.Kind+": nothing delivers it and it takes buffer space",
			o.Kind, o.Name, "stream", o.Stream, "subject", o.Subject, "consumer", o.Consumer, "messages", o.Messages,
			"oldest", stamp(o.Oldest), "fix", o.Fix)
	}
}

// orphanCollector is sluice_orphan_backlog_messages{stream,subject,consumer},
// read from the buffer at each scrape.
type orphanCollector struct {
	m    *Manager
	desc *prometheus.Desc
}

func newOrphanCollector(m *Manager) *orphanCollector {
	return &orphanCollector{m: m, desc: prometheus.NewDesc("sluice_orphan_backlog_messages",
		"Undelivered batches on a subject of a sink or source that is no longer configured (sluice backlog list).",
		[]string{"stream", "subject", "consumer"}, nil)}
}

func (c *orphanCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *orphanCollector) Collect(ch chan<- prometheus.Metric) {
	if c.m.deps.Queue == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.m.ctx, 5*time.Second)
	defer cancel()
	orphans, err := c.m.Orphans(ctx)
	if err != nil {
		// Left out, not an error: an error would fail the whole scrape
		// (promhttp's default), hiding every other metric with it.
		c.m.deps.Logger.Debug("sluice_orphan_backlog_messages left out of this scrape", "err", err)
		return
	}
	for _, o := range orphans {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(o.Messages), o.Stream, o.Subject, o.Consumer)
	}
}

// MoveRequest asks to move the backlog of an unconfigured sink to a
// configured one.
type MoveRequest struct {
	From   string `json:"from"`
	To     string `json:"to"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// MovePlan is what a move sends.
type MovePlan struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Subject  string `json:"subject"`
	Consumer string `json:"consumer,omitempty"`
	Messages int    `json:"messages"`
	Count
	// FromSeq and UpToSeq bound the batches moved: after the old
	// consumer's ack floor, up to the stream's last sequence at the plan.
	FromSeq uint64 `json:"from_seq"`
	UpToSeq uint64 `json:"up_to_seq"`
}

// stillRead refuses when a node still pulls from the old consumer (a node
// whose config was not changed yet): moving would deliver twice.
func stillRead(ci *jetstream.ConsumerInfo) error {
	if ci != nil && ci.NumWaiting > 0 {
		return refused("consumer %s still has %d pull requests waiting: a node still runs the old sink; change every node's config first", ci.Name, ci.NumWaiting)
	}
	return nil
}

func (m *Manager) outConsumer(ctx context.Context, name string) (*jetstream.ConsumerInfo, error) {
	c, err := m.deps.Queue.JetStream().Consumer(ctx, queue.StreamOut, name)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	return info, nil
}

func isNotFound(err error) bool { return errors.Is(err, jetstream.ErrConsumerNotFound) }

// PlanMove checks a move and counts what it would send.
func (m *Manager) PlanMove(ctx context.Context, req MoveRequest) (*MovePlan, *jetstream.ConsumerInfo, error) {
	if req.From == "" || req.To == "" {
		return nil, nil, badRequest("a move needs from and to")
	}
	if _, ok := m.sink(req.To); !ok {
		return nil, nil, refused("to: sink %q is not configured (sinks: %v)", req.To, names(m.deps.Sinks))
	}
	if _, ok := m.sink(req.From); ok {
		return nil, nil, refused("from: sink %q is configured: it delivers its own backlog", req.From)
	}
	p := &MovePlan{From: req.From, To: req.To, Subject: queue.OutSubject(req.From)}
	ci, err := m.outConsumer(ctx, "sink-"+req.From)
	if err != nil {
		return nil, nil, fmt.Errorf("backlog move from %q: %w", req.From, err)
	}
	if err := stillRead(ci); err != nil {
		return nil, nil, err
	}
	if ci != nil {
		p.Consumer, p.FromSeq = ci.Name, ci.AckFloor.Stream+1
	} else {
		p.FromSeq = 1
	}
	info, err := m.deps.Queue.StreamInfo(ctx, queue.StreamOut)
	if err != nil {
		return nil, nil, fmt.Errorf("backlog move from %q: %w", req.From, err)
	}
	p.UpToSeq = info.State.LastSeq
	if p.UpToSeq < p.FromSeq {
		return p, ci, nil
	}
	err = m.deps.Queue.Scan(ctx, queue.ScanOptions{Stream: queue.StreamOut, Subject: p.Subject, FromSeq: p.FromSeq, UpToSeq: p.UpToSeq, HeadersOnly: true},
		func(s queue.Stored) (bool, error) {
			p.Messages++
			p.Records += int64(recordCount(s.Header))
			p.Bytes += int64(s.Size)
			return true, nil
		})
	if err != nil {
		return nil, nil, fmt.Errorf("backlog move from %q: counting: %w", req.From, err)
	}
	return p, ci, nil
}

// MoveBacklog moves the undelivered batches of an unconfigured sink to a
// configured one: each is published to out.<to> with the message ID
// move/<to>/<its old ID> (so a second run within the duplicate window
// stores nothing twice); each group's originals are purged once its copies
// are acknowledged, and at the end the old consumer is deleted. Nothing
// left to move: the old consumer and subject are cleaned up at once, and
// no job starts.
func (m *Manager) MoveBacklog(ctx context.Context, req MoveRequest) (*MovePlan, *Job, error) {
	p, _, err := m.PlanMove(ctx, req)
	if err != nil || req.DryRun {
		return p, nil, err
	}
	if p.Messages == 0 {
		return p, nil, m.retire(ctx, p)
	}
	j := m.start(KindMove, req, p.Count, func(ctx context.Context, j *Job) error {
		// The backlog may be all OUT holds (its sink was down before the
		// rename): no room for a copy would ever come. So OUT is lent
		// room for one group of copies, and each stored group's originals
		// are removed at once, making room for the next.
		release, err := m.deps.Queue.Borrow(ctx, queue.StreamOut)
		if err != nil {
			return err
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := release(rctx); err != nil {
				m.deps.Logger.Error("backlog move: OUT keeps the room it was lent until the next start", "err", err)
			}
		}()
		out := newPublisher(m, j)
		var copied uint64 // the highest sequence of out.<from> whose copy is stored
		out.stored = func(ctx context.Context) error {
			return m.deps.Queue.PurgeSubject(ctx, queue.StreamOut, p.Subject, copied+1)
		}
		sent := 0
		opts := queue.ScanOptions{Stream: queue.StreamOut, Subject: p.Subject, FromSeq: p.FromSeq, UpToSeq: p.UpToSeq}
		err = scanResuming(ctx, m.deps.Queue, opts, j.setNote, func(s queue.Stored) (bool, error) {
			h := copyHeader(s, queue.StreamOut, "move/"+p.To)
			h.Set(batch.HeaderSink, p.To)
			sent++
			copied = s.Seq // a group is stored whole before stored runs
			return true, out.add(ctx, &nats.Msg{Subject: queue.OutSubject(p.To), Header: h, Data: s.Data}, recordCount(s.Header), len(s.Data), nil)
		})
		if err == nil {
			err = out.flush(ctx)
		}
		if err != nil {
			return err // what was copied is purged: running it again moves the rest once
		}
		if sent < p.Messages {
			return &shortError{fmt.Sprintf("moved %d of %d planned batches from %s: the rest were no longer stored; %s and %s left as they are",
				sent, p.Messages, p.Subject, p.Subject, p.Consumer)}
		}
		return m.retire(ctx, p)
	})
	return p, j, nil
}

// retire purges what a move took from out.<from> (and the delivered
// batches below it), then deletes the old consumer. In this order, a
// retire cut short leaves a consumer with nothing left to move.
func (m *Manager) retire(ctx context.Context, p *MovePlan) error {
	if p.UpToSeq > 0 {
		if err := m.deps.Queue.PurgeSubject(ctx, queue.StreamOut, p.Subject, p.UpToSeq+1); err != nil {
			return fmt.Errorf("backlog move from %q: %w", p.From, err)
		}
	}
	if p.Consumer != "" {
		if err := m.deps.Queue.DeleteConsumer(ctx, queue.StreamOut, p.Consumer); err != nil {
			return fmt.Errorf("backlog move from %q: %w", p.From, err)
		}
	}
	m.deps.Logger.Warn("backlog retired", "from", p.From, "to", p.To, "subject", p.Subject, "consumer", p.Consumer, "batches_moved", p.Messages)
	return nil
}

// DropRequest asks to delete the backlog of an unconfigured sink or source.
type DropRequest struct {
	Sink    string `json:"sink,omitempty"`
	Source  string `json:"source,omitempty"`
	Confirm bool   `json:"confirm"`
}

// Dropped says what a drop deleted.
type Dropped struct {
	Stream   string `json:"stream"`
	Subject  string `json:"subject"`
	Consumer string `json:"consumer,omitempty"`
	Messages uint64 `json:"messages"`
}

// DropBacklog deletes every batch of an unconfigured sink (out.<sink>, and
// its consumer sink-<sink>) or source (raw.<source>), for good.
func (m *Manager) DropBacklog(ctx context.Context, req DropRequest) (*Dropped, error) {
	if (req.Sink == "") == (req.Source == "") {
		return nil, badRequest("name one sink or one source")
	}
	if !req.Confirm {
		return nil, badRequest(`drop deletes records for good: send "confirm": true`)
	}
	d := &Dropped{Stream: queue.StreamOut, Subject: queue.OutSubject(req.Sink)}
	if req.Sink != "" {
		if _, ok := m.sink(req.Sink); ok {
			return nil, refused("sink %q is configured: it delivers its own backlog", req.Sink)
		}
		ci, err := m.outConsumer(ctx, "sink-"+req.Sink)
		if err != nil {
			return nil, fmt.Errorf("backlog drop of sink %q: %w", req.Sink, err)
		}
		if err := stillRead(ci); err != nil {
			return nil, err
		}
		if ci != nil {
			d.Consumer = ci.Name
		}
	} else {
		if m.source(req.Source) {
			return nil, refused("source %q is configured: the transform takes its records", req.Source)
		}
		d.Stream, d.Subject = queue.StreamRaw, queue.RawSubject(req.Source)
	}
	counts, err := m.deps.Queue.SubjectCounts(ctx, d.Stream)
	if err != nil {
		return nil, fmt.Errorf("backlog drop of %s: %w", d.Subject, err)
	}
	d.Messages = counts[d.Subject]
	if err := m.deps.Queue.PurgeSubject(ctx, d.Stream, d.Subject, 0); err != nil {
		return nil, fmt.Errorf("backlog drop of %s: %w", d.Subject, err)
	}
	if d.Consumer != "" {
		if err := m.deps.Queue.DeleteConsumer(ctx, d.Stream, d.Consumer); err != nil {
			return nil, fmt.Errorf("backlog drop of %s: %w", d.Subject, err)
		}
	}
	m.deps.Logger.Warn("backlog dropped", "stream", d.Stream, "subject", d.Subject, "consumer", d.Consumer, "messages", d.Messages)
	return d, nil
}
