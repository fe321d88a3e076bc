package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// DLQFilter selects dead-lettered records; the zero filter selects all.
type DLQFilter struct {
	Stage  string    `json:"stage,omitempty"`  // fetch, transform or sink
	Name   string    `json:"name,omitempty"`   // the source, transform or sink name
	Reason string    `json:"reason,omitempty"` // a part of the reason
	Since  time.Time `json:"since,omitzero"`   // dead-lettered at or after
}

func (f DLQFilter) empty() bool { return f == DLQFilter{} }

func (f DLQFilter) match(s queue.Stored) bool {
	h := s.Header
	return (f.Stage == "" || h.Get(batch.HeaderStage) == f.Stage) &&
		(f.Name == "" || strings.TrimPrefix(s.Subject, queue.DLQSubject(h.Get(batch.HeaderStage), "")) == f.Name) &&
		(f.Reason == "" || strings.Contains(h.Get(batch.HeaderReason), f.Reason)) &&
		(f.Since.IsZero() || !s.Time.Before(f.Since))
}

// scanDLQ walks the DLQ records f selects.
func (m *Manager) scanDLQ(ctx context.Context, f DLQFilter, headersOnly bool, fn func(queue.Stored) error) error {
	return m.deps.Queue.Scan(ctx, queue.ScanOptions{Stream: queue.StreamDLQ, From: f.Since, HeadersOnly: headersOnly},
		func(s queue.Stored) (bool, error) {
			if !f.match(s) {
				return true, nil
			}
			return true, fn(s)
		})
}

// DLQGroup counts the dead-lettered records of one stage, name and reason.
type DLQGroup struct {
	Stage  string    `json:"stage"`
	Name   string    `json:"name"`
	Reason string    `json:"reason"` // with the record's own ID taken out
	Count  int       `json:"count"`
	Bytes  int64     `json:"bytes"`
	Oldest time.Time `json:"oldest"`
	Newest time.Time `json:"newest"`
	// Example is the sequence of the newest record, for dlq show.
	Example uint64 `json:"example"`
}

// DLQGroups counts the records f selects by stage, name and reason, newest
// group first.
func (m *Manager) DLQGroups(ctx context.Context, f DLQFilter) ([]DLQGroup, error) {
	groups := map[[3]string]*DLQGroup{}
	err := m.scanDLQ(ctx, f, true, func(s queue.Stored) error {
		e := entryOf(s)
		key := [3]string{e.Stage, e.Name, reasonClass(e.Reason, e.RecordID)}
		g := groups[key]
		if g == nil {
			g = &DLQGroup{Stage: key[0], Name: key[1], Reason: key[2], Oldest: s.Time}
			groups[key] = g
		}
		g.Count++
		g.Bytes += int64(s.Size)
		g.Newest, g.Example = s.Time, s.Seq
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	out := make([]DLQGroup, 0, len(groups))
	for _, g := range groups {
		out = append(out, *g)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Newest.After(out[b].Newest) })
	return out, nil
}

// reasonClass is a reason with the record's ID taken out, so that records
// that failed the same way group together.
func reasonClass(reason, recordID string) string {
	if recordID != "" {
		reason = strings.ReplaceAll(reason, recordID, "<record>")
	}
	// JSON parse errors quote the record's broken tail; without it, the
	// records that broke the same way group together.
	reason = quotedTail.ReplaceAllString(reason, "$1 tail: …")
	if len(reason) > 200 {
		reason = reason[:200] + "…"
	}
	return reason
}

var quotedTail = regexp.MustCompile(`(unparsed|unexpected) tail: ".*$`)

// DeadEntry is one dead-lettered record.
type DeadEntry struct {
	Seq      uint64            `json:"seq"`
	Time     time.Time         `json:"time"`
	Stage    string            `json:"stage"`
	Name     string            `json:"name"`
	RecordID string            `json:"record_id"`
	Reason   string            `json:"reason"`
	Attempts int               `json:"attempts"`
	Origin   string            `json:"origin"` // where a re-drive sends it
	Headers  map[string]string `json:"headers"`
	Record   json.RawMessage   `json:"record,omitempty"`      // when it is JSON
	Text     string            `json:"record_text,omitempty"` // when it is not
}

func entryOf(s queue.Stored) DeadEntry {
	h := s.Header
	e := DeadEntry{Seq: s.Seq, Time: s.Time, Stage: h.Get(batch.HeaderStage), RecordID: h.Get(batch.HeaderRecordID),
		Reason: h.Get(batch.HeaderReason), Origin: h.Get(batch.HeaderOrigin), Headers: map[string]string{}}
	e.Name = strings.TrimPrefix(s.Subject, queue.DLQSubject(e.Stage, ""))
	e.Attempts, _ = strconv.Atoi(h.Get(batch.HeaderAttempts))
	for k := range h {
		e.Headers[k] = h.Get(k)
	}
	return e
}

// DLQShow reads one dead-lettered record by its sequence.
func (m *Manager) DLQShow(ctx context.Context, seq uint64) (*DeadEntry, error) {
	s, err := m.deps.Queue.GetStored(ctx, queue.StreamDLQ, seq)
	if err != nil {
		return nil, err
	}
	e := entryOf(*s)
	recs, err := batch.Decode(s.Data)
	if err != nil || len(recs) != 1 {
		e.Text = string(s.Data)
		return &e, nil
	}
	if json.Valid(recs[0]) {
		e.Record = recs[0]
	} else {
		e.Text = string(recs[0])
	}
	return &e, nil
}

// A record whose origin begins with RedrivePrefix goes back as a NATS
// request on that subject, to the stage that answers there (a source that
// re-reads what it could not handle: a GCS notification, say). The stage
// answers once the record is handled again, in its stream or back in the
// DLQ; a reply with HeaderRedriveError says it was not, and the record
// stays.
const (
	RedrivePrefix      = "redrive."
	HeaderRedriveError = "Sluice-Redrive-Error"
)

// redriveTimeout bounds how long a stage may take to handle one re-driven
// record (a source may read a large object).
const redriveTimeout = 30 * time.Minute

// redrivable says whether a record can go back to its stage, and why not.
func (m *Manager) redrivable(e DeadEntry) (bool, string) {
	switch {
	case strings.HasPrefix(e.Origin, RedrivePrefix):
		// redrive.<stage>.<name>: the stage must still be configured.
		_, name, _ := strings.Cut(strings.TrimPrefix(e.Origin, RedrivePrefix), ".")
		if e.Stage == "fetch" && !slices.ContainsFunc(m.deps.Sources, func(c Component) bool { return c.Name == name }) {
			return false, fmt.Sprintf("its source %q is no longer configured", name)
		}
		return true, ""
	case e.Stage == "fetch":
		return false, "fetch-stage records are source bytes sluice could not read (a broken line, an oversized object): fix the object and write it again"
	case strings.HasPrefix(e.Origin, "out."):
		if _, ok := m.sink(strings.TrimPrefix(e.Origin, "out.")); !ok {
			return false, fmt.Sprintf("its sink %q is no longer configured", strings.TrimPrefix(e.Origin, "out."))
		}
		return true, ""
	case strings.HasPrefix(e.Origin, "raw."):
		return true, ""
	}
	return false, fmt.Sprintf("unknown origin subject %q", e.Origin)
}

// RedrivePlan is what a re-drive would send, and what it must leave.
type RedrivePlan struct {
	Filter  DLQFilter      `json:"filter"`
	Count   Count          `json:"count"`
	Skipped map[string]int `json:"skipped,omitempty"` // why → records
}

// Redrive sends the records f selects back to the stage that failed them,
// removing each from the DLQ once its stage's stream has it. A record that
// fails again comes back with its attempt count raised.
func (m *Manager) Redrive(ctx context.Context, f DLQFilter, dryRun bool) (*RedrivePlan, *Job, error) {
	p := &RedrivePlan{Filter: f, Skipped: map[string]int{}}
	info, err := m.deps.Queue.StreamInfo(ctx, queue.StreamDLQ)
	if err != nil {
		return nil, nil, err
	}
	upTo := info.State.LastSeq // records that fail again come back after it
	err = m.scanDLQ(ctx, f, true, func(s queue.Stored) error {
		if s.Seq > upTo {
			return nil
		}
		if ok, why := m.redrivable(entryOf(s)); !ok {
			p.Skipped[why]++
			return nil
		}
		p.Count.Records++
		p.Count.Bytes += int64(s.Size)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dlq: %w", err)
	}
	if dryRun || p.Count.Records == 0 {
		return p, nil, nil
	}
	j := m.start(KindRedrive, f, p.Count, func(ctx context.Context, j *Job) error {
		out := newPublisher(m, j)
		err := scanResuming(ctx, m.deps.Queue, queue.ScanOptions{Stream: queue.StreamDLQ, From: f.Since, UpToSeq: upTo}, j.setNote, func(s queue.Stored) (bool, error) {
			if !f.match(s) {
				return true, nil
			}
			e := entryOf(s)
			if ok, _ := m.redrivable(e); !ok {
				j.skipped.Add(1)
				return true, nil
			}
			h := nats.Header{}
			for k, v := range s.Header {
				switch k {
				case batch.HeaderStage, batch.HeaderReason, batch.HeaderRecordID, batch.HeaderOrigin:
				default:
					h[k] = append([]string(nil), v...)
				}
			}
			h.Set(batch.HeaderMsgID, "redrive/"+strconv.FormatUint(s.Seq, 10)+"/"+e.RecordID)
			seq := s.Seq
			if strings.HasPrefix(e.Origin, RedrivePrefix) {
				return true, m.redriveRequest(ctx, j, &nats.Msg{Subject: e.Origin, Header: h, Data: s.Data}, seq)
			}
			return true, out.add(ctx, &nats.Msg{Subject: e.Origin, Header: h, Data: s.Data}, 1, len(s.Data), func(ctx context.Context) error {
				return m.deps.Queue.DeleteStored(ctx, queue.StreamDLQ, seq)
			})
		})
		if err == nil {
			err = out.flush(ctx)
		}
		return err
	})
	return p, j, nil
}

// redriveRequest hands one record back to the stage that answers on its
// origin and removes it from the DLQ once the stage says it took it. A
// stage that refuses it leaves it in the DLQ (counted as skipped, the
// reason in the job's note); no stage answering at all ends the job.
func (m *Manager) redriveRequest(ctx context.Context, j *Job, msg *nats.Msg, seq uint64) error {
	rctx, cancel := context.WithTimeout(ctx, redriveTimeout)
	defer cancel()
	reply, err := m.deps.Queue.Conn().RequestMsgWithContext(rctx, msg)
	if err != nil {
		return fmt.Errorf("re-drive to %s: %w (is that stage running?)", msg.Subject, err)
	}
	if why := reply.Header.Get(HeaderRedriveError); why != "" {
		j.skipped.Add(1)
		j.setNote(fmt.Sprintf("%s refused a record: %s", msg.Subject, why))
		return nil
	}
	if err := m.deps.Queue.DeleteStored(ctx, queue.StreamDLQ, seq); err != nil {
		return err
	}
	m.progress(j, 1, len(msg.Data))
	return nil
}

// PurgeDLQ deletes the records f selects and says how many. The caller
// asks for confirmation first: purged records are gone.
func (m *Manager) PurgeDLQ(ctx context.Context, f DLQFilter) (int, error) {
	if f.empty() {
		info, err := m.deps.Queue.StreamInfo(ctx, queue.StreamDLQ)
		if err != nil {
			return 0, err
		}
		if err := m.deps.Queue.PurgeStream(ctx, queue.StreamDLQ); err != nil {
			return 0, err
		}
		m.deps.Logger.Warn("DLQ purged", "records", info.State.Msgs)
		return int(info.State.Msgs), nil
	}
	var seqs []uint64
	if err := m.scanDLQ(ctx, f, true, func(s queue.Stored) error { seqs = append(seqs, s.Seq); return nil }); err != nil {
		return 0, fmt.Errorf("dlq: %w", err)
	}
	for i, seq := range seqs {
		if err := m.deps.Queue.DeleteStored(ctx, queue.StreamDLQ, seq); err != nil {
			return i, err
		}
	}
	m.deps.Logger.Warn("DLQ records purged", "records", len(seqs), "stage", f.Stage, "name", f.Name, "reason", f.Reason)
	return len(seqs), nil
}
