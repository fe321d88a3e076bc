package queue

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sluicehq/sluice/queue/batch"
)

func outMsg(sink, id string) *nats.Msg {
	h := nats.Header{}
	h.Set(batch.HeaderMsgID, id)
	h.Set(batch.HeaderCount, "1")
	return &nats.Msg{Subject: OutSubject(sink), Header: h, Data: batch.Encode([][]byte{[]byte(`{"r":1}`)})}
}

// subjectMsgs is how many messages stream holds on subject.
func subjectMsgs(t *testing.T, q *Queue, stream, subject string) uint64 {
	t.Helper()
	s, err := q.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// ackAllOf makes a durable consumer that sluice did not create (an
// operator's, made on the NATS port) read and ack n messages.
func ackAllOf(t *testing.T, q *Queue, cfg jetstream.ConsumerConfig, n int) {
	t.Helper()
	ctx := context.Background()
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	c, err := q.js.CreateOrUpdateConsumer(ctx, StreamOut, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < n {
		b, err := c.Fetch(n-got, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
			got++
		}
		if err := b.Error(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream >= uint64(n)
	})
}

// Issue case 2: a durable consumer the trimmer did not create, whose filter
// is not the sink's (none, a wildcard, a list), acked everything; the sink
// acked nothing. The sink's records must stay, and go once the sink acks.
func TestTrimHoldsRecordsForConsumersItDidNotCreate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  jetstream.ConsumerConfig
	}{
		{"unfiltered", jetstream.ConsumerConfig{Durable: "debug"}},
		{"wildcard", jetstream.ConsumerConfig{Durable: "debug", FilterSubject: "out.*"}},
		{"full wildcard", jetstream.ConsumerConfig{Durable: "debug", FilterSubject: ">"}},
		{"list", jetstream.ConsumerConfig{Durable: "debug", FilterSubjects: []string{"out.bigquery", "out.splunk"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := startQueue(t, t.TempDir(), func(o *Options) { o.RetainDelivered = time.Nanosecond; o.DuplicateWindow = 100 * time.Millisecond })
			defer q.Close()
			ctx := context.Background()
			for i := 0; i < 10; i++ {
				if err := q.PublishMessages(ctx, []*nats.Msg{outMsg("splunk", fmt.Sprint("s-", i))}); err != nil {
					t.Fatal(err)
				}
			}
			sink, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamOut, Durable: "sink-splunk", Subject: OutSubject("splunk"), MaxAckPending: 4})
			if err != nil {
				t.Fatal(err)
			}
			ackAllOf(t, q, tc.cfg, 10)
			if err := q.Trim(ctx); err != nil {
				t.Fatal(err)
			}
			if n := subjectMsgs(t, q, StreamOut, OutSubject("splunk")); n != 10 {
				t.Fatalf("after a trim OUT holds %d of the 10 records sink-splunk has not acked", n)
			}
			// The sink acks 4: those are delivered to every reader and go.
			for i := 0; i < 4; i++ {
				d, err := sink.Next(ctx, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if err := d.Ack(); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, func() bool {
				info, err := sink.Info(ctx)
				return err == nil && info.AckFloor == 4
			})
			time.Sleep(150 * time.Millisecond) // past the duplicate window
			if err := q.Trim(ctx); err != nil {
				t.Fatal(err)
			}
			if n := subjectMsgs(t, q, StreamOut, OutSubject("splunk")); n != 6 {
				t.Fatalf("after the sink acked 4 of 10, OUT holds %d, want 6", n)
			}
		})
	}
}

// What the trimmer cannot reason about makes it keep more: an ack policy
// whose floor it does not know, a filter it cannot read, a consumer without
// a config. Ephemeral readers hold nothing; subjects no durable reads are
// left alone.
func TestDeliveredFloorsErrOnKeeping(t *testing.T) {
	ci := func(name, durable string, ack server.AckPolicy, floor uint64, filters ...string) *server.ConsumerInfo {
		cfg := &server.ConsumerConfig{Durable: durable, AckPolicy: ack}
		if len(filters) == 1 {
			cfg.FilterSubject = filters[0]
		} else {
			cfg.FilterSubjects = filters
		}
		return &server.ConsumerInfo{Name: name, Config: cfg, AckFloor: server.SequenceInfo{Stream: floor}}
	}
	subjects := map[string]uint64{"out.splunk": 1, "out.bigquery": 1, "out.audit": 1}
	for _, tc := range []struct {
		name      string
		consumers []*server.ConsumerInfo
		want      map[string]uint64
	}{
		{"exact filters", []*server.ConsumerInfo{
			ci("sink-splunk", "sink-splunk", server.AckExplicit, 7, "out.splunk"),
			ci("sink-bigquery", "sink-bigquery", server.AckExplicit, 9, "out.bigquery"),
		}, map[string]uint64{"out.splunk": 7, "out.bigquery": 9}},
		{"ephemeral holds nothing", []*server.ConsumerInfo{
			ci("sink-splunk", "sink-splunk", server.AckExplicit, 7, "out.splunk"),
			ci("replay", "", server.AckExplicit, 0, ">"),
		}, map[string]uint64{"out.splunk": 7}},
		{"wildcard and list take the lowest", []*server.ConsumerInfo{
			ci("sink-splunk", "sink-splunk", server.AckExplicit, 7, "out.splunk"),
			ci("tap", "tap", server.AckAll, 3, "out.*"),
			ci("pair", "pair", server.AckNone, 5, "out.bigquery", "out.audit"),
		}, map[string]uint64{"out.splunk": 3, "out.bigquery": 3, "out.audit": 3}},
		{"unknown ack policy holds what it reads", []*server.ConsumerInfo{
			ci("sink-splunk", "sink-splunk", server.AckExplicit, 7, "out.splunk"),
			ci("fc", "fc", server.AckFlowControl, 100, "out.splunk"),
		}, map[string]uint64{"out.splunk": 0}},
		{"unreadable filter holds everything", []*server.ConsumerInfo{
			ci("sink-splunk", "sink-splunk", server.AckExplicit, 7, "out.splunk"),
			ci("odd", "odd", server.AckExplicit, 2, "out..x"),
		}, map[string]uint64{"out.splunk": 2, "out.bigquery": 2, "out.audit": 2}},
		{"no config holds everything", []*server.ConsumerInfo{
			ci("sink-splunk", "sink-splunk", server.AckExplicit, 7, "out.splunk"),
			{Name: "blank", AckFloor: server.SequenceInfo{Stream: 50}},
		}, map[string]uint64{"out.splunk": 0, "out.bigquery": 0, "out.audit": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := deliveredFloors(subjects, durableReaders(tc.consumers))
			if !maps.Equal(got, tc.want) {
				t.Fatalf("floors %v, want %v", got, tc.want)
			}
		})
	}
}

// Issue case 3: when the answer to "which is the first record stored since
// the replay window began" does not come in time (a server 408 under load,
// the client's own timer), the trimmer must not read it as "none": every
// delivered record is inside the window and must stay.
func TestTrimKeepsTheWindowWhenTheLookupGetsNoAnswer(t *testing.T) {
	q := startQueue(t, t.TempDir(), func(o *Options) {
		o.RetainDelivered = time.Hour
		o.trimLookupWait = time.Nanosecond // the answer cannot come in time
	})
	defer q.Close()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("id-", i), "r")}); err != nil {
			t.Fatal(err)
		}
	}
	deliverAll(t, q, 5)
	if err := q.Trim(ctx); err != nil {
		t.Logf("trim: %v", err) // an error is fine; a purge is not
	}
	if n := streamMsgs(t, q, StreamRaw); n != 5 {
		t.Fatalf("RAW holds %d of 5 delivered records stored a moment ago, inside the 1h replay window: a lookup without an answer was read as \"nothing newer\"", n)
	}
}

// interleavingKV runs between, once, after its first Get: another writer
// that acts between this writer's read and its write.
type interleavingKV struct {
	jetstream.KeyValue
	between func()
}

func (kv *interleavingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	e, err := kv.KeyValue.Get(ctx, key)
	if f := kv.between; f != nil {
		kv.between = nil
		f()
	}
	return e, err
}

func markAt(t *testing.T, kv jetstream.KeyValue, key string) time.Time {
	t.Helper()
	e, err := kv.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Issue case 12: two nodes raise the same trim mark; the one with the
// earlier bound read the mark before the other wrote a later one. The mark
// must end at the later bound, whether the key was absent or not.
func TestTrimMarkNeverMovesBackwards(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	kv, err := q.trimMarks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	early, late := base.Add(time.Hour), base.Add(2*time.Hour)
	for _, tc := range []struct {
		name    string
		initial *time.Time
	}{
		{"absent", nil},
		{"present", &base},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := trimKey(StreamOut, "out."+tc.name)
			if tc.initial != nil {
				if err := raiseMark(ctx, kv, key, *tc.initial); err != nil {
					t.Fatal(err)
				}
			}
			racing := &interleavingKV{KeyValue: kv, between: func() {
				if err := raiseMark(ctx, kv, key, late); err != nil {
					t.Error(err)
				}
			}}
			if err := raiseMark(ctx, racing, key, early); err != nil {
				t.Fatal(err)
			}
			if m := markAt(t, kv, key); !m.Equal(late) {
				t.Fatalf("mark %s after writers of %s and %s: it moved backwards", m.Format(time.RFC3339), early.Format(time.RFC3339), late.Format(time.RFC3339))
			}
		})
	}
	// And writers that really run at once end at the latest bound.
	key := trimKey(StreamOut, "out.concurrent")
	errs := make(chan error, 8)
	for i := range 8 {
		go func() { errs <- raiseMark(ctx, kv, key, base.Add(time.Duration(i)*time.Minute)) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if m := markAt(t, kv, key); !m.Equal(base.Add(7 * time.Minute)) {
		t.Fatalf("mark %s after 8 concurrent writers, want the latest %s", m.Format(time.RFC3339), base.Add(7*time.Minute).Format(time.RFC3339))
	}
}
