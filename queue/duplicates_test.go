package queue

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A message JetStream drops as a duplicate (its ID stored within the
// window) is counted as such, not as a published record: two sources that
// shared IDs by mistake showed as records stored while one's were dropped.
func TestDuplicatesAreCountedApartFromPublished(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := startQueue(t, t.TempDir(), func(o *Options) { o.Metrics = reg })
	defer q.Close()
	for range 2 {
		if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "sls/a/p/l/0/7", `{"x":1}`, `{"x":2}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(q.metrics.publishedRecords.WithLabelValues(StreamRaw)); got != 2 {
		t.Errorf("published records = %v, want 2 (the second publish was a duplicate)", got)
	}
	if got := testutil.ToFloat64(q.metrics.duplicates.WithLabelValues(StreamRaw)); got != 1 {
		t.Errorf("duplicate messages = %v, want 1", got)
	}
}
