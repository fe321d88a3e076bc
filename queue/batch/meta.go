package batch

import (
	"net/textproto"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Batch is one message of the buffer as the stages see it: the contract
// between them. Its headers are written (Header) and read (ParseMeta) here
// only, so no stage sets them by hand.
type Batch struct {
	Subject string // the stream subject it is stored under (queue.RawSubject, OutSubject…)
	ID      string // message ID (Nats-Msg-Id): JetStream deduplicates by it
	Meta    Meta
	Body    []byte // the records, encoded (Encode, Bodies.Encode); Meta.Count says how many
}

// Meta is what a batch carries besides its records, as typed values; each
// field is one header, written only when set.
type Meta struct {
	Source string // the source's name
	Kind   string // the source's type: sls, gcs
	Event  string // the source's event (JSON) for the event policy
	Schema string // the source's schema name, if it names one
	Count  int    // records in the batch; always written

	FirstTime time.Time // earliest record time (SLS)
	LastTime  time.Time // latest record time (SLS)
	FetchedAt time.Time // when the source read it

	RawID string // the RAW batch an OUT batch came from
	Sink  string // the sink an OUT batch goes to

	// Of a DLQ entry.
	Stage    string // fetch, transform or sink
	Reason   string
	RecordID string
	Origin   string // the subject a re-drive sends the record to
	Attempts int    // how often the record was dead-lettered

	Replay     string // the replay job that made this copy
	ReplaySink string // a replay through the transform goes to this sink only
	Encoded    string // EncodedTransform, EncodedDataLast: the transform wrote the records
	Requeued   int    // how often a stage stored the batch again (queue's Requeue)
}

// Header is the batch's header as JetStream stores it.
func (b *Batch) Header() nats.Header {
	h := make(nats.Header, 12)
	if b.ID != "" {
		h[HeaderMsgID] = []string{b.ID}
	}
	b.Meta.write(h)
	return h
}

// write sets m's headers in h.
func (m *Meta) write(h nats.Header) {
	// The string headers: which field each is, field says.
	for _, k := range [...]string{
		HeaderSource, HeaderKind, HeaderEvent, HeaderSchema, HeaderRawID, HeaderSink,
		HeaderStage, HeaderReason, HeaderRecordID, HeaderOrigin, HeaderReplay, HeaderReplaySink, HeaderEncoded,
	} {
		if v := *m.field(k); v != "" {
			h[k] = []string{v}
		}
	}
	h[HeaderCount] = []string{strconv.Itoa(m.Count)}
	for _, f := range [...]struct {
		k string
		t time.Time
	}{{HeaderFirstTime, m.FirstTime}, {HeaderLastTime, m.LastTime}, {HeaderFetchedAt, m.FetchedAt}} {
		if !f.t.IsZero() {
			h[f.k] = []string{strconv.FormatInt(f.t.UnixNano(), 10)}
		}
	}
	for _, f := range [...]struct {
		k string
		n int
	}{{HeaderAttempts, m.Attempts}, {HeaderRequeued, m.Requeued}} {
		if f.n > 0 {
			h[f.k] = []string{strconv.Itoa(f.n)}
		}
	}
}

// ParseMeta reads a stored batch's headers: the message ID and Meta. A
// header that is missing or not a number reads as the zero value, as
// before Meta (header.Get then strconv).
func ParseMeta(h nats.Header) (id string, m Meta) {
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		if k == HeaderMsgID {
			id = vs[0]
		} else if p := m.field(k); p != nil {
			*p = vs[0]
		} else {
			m.parseNumber(k, vs[0])
		}
	}
	return id, m
}

// field is where the string header k goes; nil for the others.
func (m *Meta) field(k string) *string {
	switch k {
	case HeaderSource:
		return &m.Source
	case HeaderKind:
		return &m.Kind
	case HeaderEvent:
		return &m.Event
	case HeaderSchema:
		return &m.Schema
	case HeaderRawID:
		return &m.RawID
	case HeaderSink:
		return &m.Sink
	case HeaderStage:
		return &m.Stage
	case HeaderReason:
		return &m.Reason
	case HeaderRecordID:
		return &m.RecordID
	case HeaderOrigin:
		return &m.Origin
	case HeaderReplay:
		return &m.Replay
	case HeaderReplaySink:
		return &m.ReplaySink
	case HeaderEncoded:
		return &m.Encoded
	}
	return nil
}

func (m *Meta) parseNumber(k, v string) {
	switch k {
	case HeaderCount:
		m.Count, _ = strconv.Atoi(v)
	case HeaderAttempts:
		m.Attempts, _ = strconv.Atoi(v)
	case HeaderRequeued:
		m.Requeued, _ = strconv.Atoi(v)
	case HeaderFirstTime:
		m.FirstTime = parseNanos(v)
	case HeaderLastTime:
		m.LastTime = parseNanos(v)
	case HeaderFetchedAt:
		m.FetchedAt = parseNanos(v)
	}
}

func parseNanos(v string) time.Time {
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// HeaderSize is how many bytes nats.go writes for the batch's header
// (Msg.headerSize: "NATS/1.0\r\n", "key: value\r\n" a value, "\r\n"), of
// the same header Header returns: a stage that must fit a batch within the
// largest message reckons with it.
func (b *Batch) HeaderSize() int { return HeaderSize(b.Header()) }

// HeaderSize is how many bytes nats.go writes for h (it trims values).
func HeaderSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(textproto.TrimString(v)) + len("\r\n")
		}
	}
	return n
}
