// Package batch is the record batch that one JetStream message carries.
//
// One message holds many records because a JetStream hop costs far more per
// message than per byte (see docs/DESIGN.md, "Record batches"). The body is a
// version byte, a uvarint record count, then each record as a uvarint length
// and its bytes: splitting it copies nothing and re-encodes no JSON.
package batch

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/sluicehq/sluice/internal/jsonx"
)

// Header names carried by batch messages.
const (
	HeaderMsgID     = "Nats-Msg-Id"
	HeaderSource    = "Sluice-Source"
	HeaderKind      = "Sluice-Kind"
	HeaderEvent     = "Sluice-Event"
	HeaderSchema    = "Sluice-Schema"
	HeaderCount     = "Sluice-Count"
	HeaderFirstTime = "Sluice-First-Time"
	HeaderLastTime  = "Sluice-Last-Time"
	HeaderFetchedAt = "Sluice-Fetched-At"
	HeaderRawID     = "Sluice-Raw-Id"
	HeaderSink      = "Sluice-Sink"

	HeaderStage    = "Sluice-Stage"
	HeaderReason   = "Sluice-Reason"
	HeaderRecordID = "Sluice-Record-Id"
	HeaderOrigin   = "Sluice-Origin-Subject"
	// HeaderAttempts counts how often a record was dead-lettered; a re-drive
	// carries it, so a record that fails again comes back with one more.
	HeaderAttempts = "Sluice-Attempts"

	// HeaderReplay marks a copy made by a replay job (the job ID); the
	// Splunk sink turns it into the indexed field sluice_replay.
	HeaderReplay = "Sluice-Replay"
	// HeaderReplaySink limits a replay through the transform to one sink.
	HeaderReplaySink = "Sluice-Replay-Sink"
	// HeaderEncoded marks an OUT batch whose records the transform wrote
	// with its own JSON encoders: a sink need not validate them again (a
	// record that is not JSON anyway is refused by Splunk, and dead-lettered).
	// Its values: EncodedTransform, EncodedDataLast.
	HeaderEncoded = "Sluice-Encoded"
	// HeaderRequeued counts how often a stage stored a batch again at the
	// end of its subject (queue's Delivery.Requeue); its message ID is then
	// requeue/<count>/<batch ID>.
	HeaderRequeued = "Sluice-Requeued"
)

// Values of HeaderEncoded.
const (
	// EncodedTransform: the transform wrote the records (versions before
	// data-last records; their batches may still wait in OUT).
	EncodedTransform = "transform"
	// EncodedDataLast: the transform wrote the records, each with its data
	// as the last member (ReadOutputDataLast).
	EncodedDataLast = "transform-data-last"
)

const version = 1

// ErrCorrupt is returned (wrapped) for a body that is not a valid batch.
var ErrCorrupt = errors.New("corrupt record batch")

// Encode packs records into a batch body.
func Encode(records [][]byte) []byte {
	return AppendEncode(make([]byte, 0, encodedSize(records)), records)
}

// encodedSize bounds the size of records' body.
func encodedSize(records [][]byte) int {
	n := 1 + binary.MaxVarintLen64
	for _, r := range records {
		n += binary.MaxVarintLen64 + len(r)
	}
	return n
}

// Bodies recycles batch bodies. Once JetStream acked a message, neither the
// client (it copied the body into its write buffer) nor the server (it
// stores its own copy) reads the body again, so it can hold the next batch:
// a body of ~64 KB a message was a tenth of everything the node allocated.
type Bodies struct{ pool sync.Pool }

// Encode packs records into a body, recycled if one large enough is free.
func (b *Bodies) Encode(records [][]byte) []byte {
	n := encodedSize(records)
	if p, _ := b.pool.Get().(*[]byte); p != nil && cap(*p) >= n {
		return AppendEncode((*p)[:0], records)
	}
	// An eighth more, so that a body serves batches a little larger than
	// its first one: batches of one source vary by a few percent.
	return AppendEncode(make([]byte, 0, n+n/8), records)
}

// Release hands back a body of Encode whose message JetStream acked.
func (b *Bodies) Release(body []byte) { b.pool.Put(&body) }

// AppendEncode appends the body of records to dst.
func AppendEncode(dst []byte, records [][]byte) []byte {
	dst = append(dst, version)
	dst = binary.AppendUvarint(dst, uint64(len(records)))
	for _, r := range records {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return dst
}

// Decode splits a body into its records. The records alias body.
func Decode(body []byte) ([][]byte, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrCorrupt)
	}
	if body[0] != version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, body[0], version)
	}
	off := 1
	count, k := binary.Uvarint(body[off:])
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad record count at offset %d", ErrCorrupt, off)
	}
	off += k
	// Every record takes at least one byte, so a count beyond the body is corrupt.
	if count > uint64(len(body)-off) {
		return nil, fmt.Errorf("%w: count %d exceeds body of %d bytes", ErrCorrupt, count, len(body))
	}
	records := make([][]byte, 0, count)
	for i := uint64(0); i < count; i++ {
		size, k := binary.Uvarint(body[off:])
		if k <= 0 {
			return nil, fmt.Errorf("%w: bad length of record %d at offset %d", ErrCorrupt, i, off)
		}
		off += k
		if size > uint64(len(body)-off) {
			return nil, fmt.Errorf("%w: record %d of %d bytes at offset %d overruns body of %d bytes", ErrCorrupt, i, size, off, len(body))
		}
		records = append(records, body[off:off+int(size):off+int(size)])
		off += int(size)
	}
	if off != len(body) {
		return nil, fmt.Errorf("%w: %d trailing bytes after %d records", ErrCorrupt, len(body)-off, count)
	}
	return records, nil
}

// RecordID is the ID of the n-th record of a batch: the ID policies, the DLQ,
// replay and duplicate checks use.
func RecordID(batchID string, n int) string {
	return batchID + "/" + strconv.Itoa(n)
}

// Output is one record of an OUT batch: what a policy produced for one sink.
// Data comes last, in this struct and in AppendJSON's output, so a reader of
// records the transform wrote takes it without scanning it (ReadOutputDataLast).
type Output struct {
	ID        string  `json:"id"`
	Timestamp float64 `json:"timestamp"`

	// Splunk HEC metadata; empty means the sink's default.
	Index      string `json:"index,omitempty"`
	Sourcetype string `json:"sourcetype,omitempty"`
	Source     string `json:"source,omitempty"`
	Host       string `json:"host,omitempty"`

	// BigQuery destination, as in Swarm.
	Dataset   string `json:"dataset,omitempty"`
	Table     string `json:"table,omitempty"`
	Partition string `json:"partition,omitempty"`

	Fields map[string]any  `json:"fields,omitempty"` // Splunk indexed fields
	Data   json.RawMessage `json:"data"`
}

// AppendJSON appends o as JSON, the same as encoding/json would but
// without re-validating Data (the policy engine produced it). Data is the
// last member.
func (o *Output) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"id":`...)
	dst = jsonx.AppendString(dst, o.ID)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendFloat(dst, o.Timestamp, 'f', -1, 64)
	for _, f := range [...]struct{ k, v string }{
		{"index", o.Index}, {"sourcetype", o.Sourcetype}, {"source", o.Source}, {"host", o.Host},
		{"dataset", o.Dataset}, {"table", o.Table}, {"partition", o.Partition},
	} {
		if f.v != "" {
			dst = append(dst, ',')
			dst = jsonx.AppendString(dst, f.k)
			dst = append(dst, ':')
			dst = jsonx.AppendString(dst, f.v)
		}
	}
	if len(o.Fields) > 0 {
		b, err := json.Marshal(o.Fields)
		if err != nil {
			return dst, fmt.Errorf("output %q: fields: %w", o.ID, err)
		}
		dst = append(dst, `,"fields":`...)
		dst = append(dst, b...)
	}
	dst = append(dst, `,"data":`...)
	if len(o.Data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, o.Data...)
	}
	return append(dst, '}'), nil
}

// StringField is where the output's string field name goes; nil for the
// others.
func (o *Output) StringField(name string) *string {
	switch name {
	case "id":
		return &o.ID
	case "index":
		return &o.Index
	case "sourcetype":
		return &o.Sourcetype
	case "source":
		return &o.Source
	case "host":
		return &o.Host
	case "dataset":
		return &o.Dataset
	case "table":
		return &o.Table
	case "partition":
		return &o.Partition
	}
	return nil
}

// ReadOutput reads an OUT record without decoding its data: Data is a
// slice of record, Fields is left nil and fields returned as written.
// It checks the record's framing, not the grammar of data and fields:
// a caller that passes them on validates them, or decodes them anyway.
func ReadOutput(record []byte) (o Output, fields []byte, err error) {
	return readOutput(record, "")
}

// ReadOutputDataLast is ReadOutput for a record whose data is its last
// member (AppendJSON wrote it, in a batch marked EncodedDataLast): data is
// taken as the rest of the record, not scanned, which was most of reading
// a record in a drain. A record whose data is not last gets Data with the
// members after it attached: not JSON, so Splunk refuses it and it is
// dead-lettered, as for any other record the transform's mark vouched for.
func ReadOutputDataLast(record []byte) (o Output, fields []byte, err error) {
	return readOutput(record, "data")
}

func readOutput(record []byte, last string) (o Output, fields []byte, err error) {
	err = jsonx.FieldsLast(record, last, func(key, v []byte) error {
		var err error
		if dst := o.StringField(string(key)); dst != nil {
			*dst, err = outputString(v)
		}
		switch string(key) {
		case "timestamp":
			o.Timestamp, err = strconv.ParseFloat(string(v), 64)
		case "data":
			o.Data = v
		case "fields":
			fields = v
		}
		if err != nil {
			return fmt.Errorf("field %s: %w", key, err)
		}
		return nil
	})
	return o, fields, err
}

// outputString reads a string field; null reads as empty, as encoding/json
// does.
func outputString(v []byte) (string, error) {
	if string(v) == "null" {
		return "", nil
	}
	if len(v) == 0 || v[0] != '"' {
		return "", fmt.Errorf("want a string, got %s", v)
	}
	return jsonx.Unquote(v)
}
