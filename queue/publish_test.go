package queue

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// An error says what happened on the node it happens on: a single node has
// no replicas whose quorum could be missing.
func TestPublishWithoutAnswerOnASingleNodeSpeaksOfNoQuorum(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	m := rawMsg("a", "id-1", `{"n":1}`)
	m.Subject = "nowhere.a" // no stream takes it: no answer comes
	err := q.Publish(context.Background(), []*nats.Msg{m})
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
