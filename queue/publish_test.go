package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/queue/batch"
)

// An error says what happened on the node it happens on: a single node has
// no replicas whose quorum could be missing.
func TestPublishWithoutAnswerOnASingleNodeSpeaksOfNoQuorum(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	m := rawMsg("a", "id-1", `{"n":1}`)
	m.Subject = "nowhere.a" // no stream takes it: no answer comes
	err := q.PublishMessages(context.Background(), []*nats.Msg{m})
	if err == nil {
		t.Fatal("a publish no stream answered succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, "quorum") || strings.Contains(msg, "replicas") {
		t.Fatalf("single node (replicas 1), yet the error blames replicas: %v", err)
	}
	if !strings.Contains(msg, "publish to nowhere.a") || !strings.Contains(msg, "embedded JetStream server") {
		t.Fatalf("the error does not say what did not answer: %v", err)
	}
}

// A batch is stored with the header Batch.Header writes, and its delivery
// reads the same Meta and records back; a batch without an ID is refused.
func TestPublishBatchDeliversItsMeta(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	meta := batch.Meta{Source: "a", Kind: "sls", Event: `{"e":1}`, Count: 2, FetchedAt: time.Unix(0, 42), Replay: "job-1"}
	b := &batch.Batch{Subject: RawSubject("a"), ID: "id-1", Meta: meta, Body: batch.Encode([][]byte{[]byte("r0"), []byte("r1")})}
	if err := q.Publish(ctx, []*batch.Batch{b}); err != nil {
		t.Fatal(err)
	}
	var perr *PublishError
	if err := q.Publish(ctx, []*batch.Batch{{Subject: RawSubject("a"), Meta: meta, Body: b.Body}}); !errors.As(err, &perr) {
		t.Fatalf("a batch without ID: %v", err)
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Next(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := d.Records()
	got := d.Meta()
	if d.ID != "id-1" || err != nil || len(recs) != 2 || string(recs[1]) != "r1" ||
		got.Source != "a" || got.Event != `{"e":1}` || got.Count != 2 || got.FetchedAt.UnixNano() != 42 || got.Replay != "job-1" {
		t.Fatalf("delivered %s: meta %+v, records %q, %v", d.ID, got, recs, err)
	}
}
