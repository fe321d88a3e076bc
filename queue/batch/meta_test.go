package batch

import (
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func fullMeta() Meta {
	return Meta{
		Source: "audit", Kind: "sls", Event: `{"project":"p"}`, Schema: "s1", Count: 3,
		FirstTime: time.Unix(0, 1700000000000000001), LastTime: time.Unix(0, 1700000000000000002), FetchedAt: time.Unix(0, 1700000000000000003),
		RawID: "raw-1", Sink: "splunk", Stage: "sink", Reason: "why", RecordID: "raw-1/2", Origin: "out.splunk", Attempts: 2,
		Replay: "job-1", ReplaySink: "bq", Encoded: EncodedDataLast, Requeued: 4,
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, b := range []Batch{{ID: "id-1", Meta: fullMeta()}, {ID: "id-2", Meta: Meta{Source: "a", Count: 1}}, {}} {
		id, m := ParseMeta(b.Header())
		if id != b.ID || !metaEqual(m, b.Meta) {
			t.Errorf("round trip of %+v: %q %+v", b, id, m)
		}
	}
}

// metaEqual compares a and b, their times by instant (time.Unix sets a
// location, a zero time none).
func metaEqual(a, b Meta) bool {
	for _, p := range []*Meta{&a, &b} {
		for _, t := range []*time.Time{&p.FirstTime, &p.LastTime, &p.FetchedAt} {
			if !t.IsZero() {
				*t = t.UTC()
			}
		}
	}
	return a == b
}

// A header as the stages set it by hand before Batch (SLS's RAW batch, a
// transform's OUT batch, a DLQ entry) reads into Meta and is written
// back the same, so batches already in a buffer keep their meaning.
func TestMetaReadsHandWrittenHeaders(t *testing.T) {
	ns := strconv.FormatInt(time.Now().UnixNano(), 10)
	for _, h := range []nats.Header{
		{HeaderMsgID: {"sls/a/p/l/0/k"}, HeaderSource: {"a"}, HeaderKind: {"sls"}, HeaderEvent: {`{"x":1}`}, HeaderSchema: {"s"},
			HeaderFirstTime: {ns}, HeaderLastTime: {ns}, HeaderFetchedAt: {ns}, HeaderCount: {"12"}},
		{HeaderMsgID: {"raw-1/splunk"}, HeaderRawID: {"raw-1"}, HeaderSink: {"splunk"}, HeaderCount: {"2"}, HeaderEncoded: {EncodedDataLast},
			HeaderSource: {"a"}, HeaderFetchedAt: {ns}, HeaderReplay: {"job"}},
		{HeaderMsgID: {"dlq/sink/raw-1/0"}, HeaderStage: {"sink"}, HeaderReason: {"no"}, HeaderRecordID: {"raw-1/0"},
			HeaderOrigin: {"out.splunk"}, HeaderAttempts: {"1"}, HeaderCount: {"1"}, HeaderReplaySink: {"bq"}, HeaderRequeued: {"3"}},
	} {
		id, m := ParseMeta(h)
		b := Batch{ID: id, Meta: m}
		if got := b.Header(); !maps.EqualFunc(got, h, slices.Equal) {
			t.Errorf("read and written again:\n got %v\nwant %v", got, h)
		}
	}
}

// HeaderSize is what nats.go writes, so a stage's size check and the
// client's cannot drift apart.
func TestHeaderSizeIsWhatNatsWrites(t *testing.T) {
	m := fullMeta()
	m.Reason = "  padded, with\r\na newline  "
	for _, b := range []Batch{{ID: "id-1", Meta: m}, {Meta: Meta{Count: 1}}} {
		msg := &nats.Msg{Subject: "raw.a", Header: b.Header(), Data: []byte("body")}
		if got, want := b.HeaderSize(), msg.Size()-len(msg.Subject)-len(msg.Data); got != want {
			t.Errorf("HeaderSize %d, nats.go writes %d", got, want)
		}
	}
}
