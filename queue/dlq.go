package queue

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/queue/batch"
)

// Stage is a kind of stage: it labels DLQ subjects, entries and metrics.
type Stage string

// The stages.
const (
	StageFetch     Stage = "fetch"
	StageTransform Stage = "transform"
	StageSink      Stage = "sink"
)

// DeadRecord is one record that can never succeed, with why.
type DeadRecord struct {
	Stage    Stage
	Name     string // the source, transform or sink name
	RecordID string
	Reason   string
	Origin   string     // subject the record came from, where a re-drive sends it
	Meta     batch.Meta // of its batch, kept with it (source, event, times)
	Data     []byte     // the record itself
}

// deadBatch is the DLQ entry of r: its batch's Meta, with its stage,
// reason, record ID and origin, and one more attempt.
func deadBatch(r DeadRecord) *batch.Batch {
	m := r.Meta
	m.Stage, m.Reason, m.RecordID, m.Origin = string(r.Stage), r.Reason, r.RecordID, r.Origin
	m.Attempts++
	m.Count, m.Requeued = 1, 0
	return &batch.Batch{Subject: DLQSubject(string(r.Stage), r.Name), ID: "dlq/" + string(r.Stage) + "/" + r.RecordID, Meta: m}
}

// DeadLetterHeaderSize is the size of the header DeadLetter stores r
// with: a stage that must fit r's entry within the largest message
// reckons with it.
func DeadLetterHeaderSize(r DeadRecord) int { return deadBatch(r).HeaderSize() }

// DeadLetter stores each record as its own DLQ message, waiting for every ack.
// The message ID is the record ID plus the stage, so a stage that crashes
// after dead-lettering and retries does not store it twice.
func (q *Queue) DeadLetter(ctx context.Context, recs []DeadRecord) error {
	bs := make([]*batch.Batch, len(recs))
	for i, r := range recs {
		bs[i] = deadBatch(r)
		bs[i].Body = batch.Encode([][]byte{r.Data})
	}
	if err := q.Publish(ctx, bs); err != nil {
		return fmt.Errorf("queue: dead-letter %d records: %w", len(recs), err)
	}
	for _, r := range recs {
		q.metrics.deadLettered.WithLabelValues(string(r.Stage), r.Name).Inc()
	}
	return nil
}

// DeadLetterBatch sends every record of a delivery to the DLQ with one reason.
// A body that is not a valid batch goes as one record, bytes untouched.
func (q *Queue) DeadLetterBatch(ctx context.Context, stage Stage, name string, d *Delivery, reason string) error {
	recs, err := d.Records()
	if err != nil {
		return q.DeadLetter(ctx, []DeadRecord{{
			Stage: stage, Name: name, RecordID: d.BatchID() + "/corrupt", Origin: d.Subject, Meta: d.Meta(),
			Reason: reason + "; " + err.Error(), Data: d.Data,
		}})
	}
	dead := make([]DeadRecord, len(recs))
	for i, r := range recs {
		dead[i] = DeadRecord{Stage: stage, Name: name, RecordID: batch.RecordID(d.BatchID(), i), Reason: reason, Origin: d.Subject, Meta: d.Meta(), Data: r}
	}
	return q.DeadLetter(ctx, dead)
}

// DeclareDeadLetterer shows a stage's DLQ counter at 0 before its first
// record, so that alerts on its growth work from the start.
func (q *Queue) DeclareDeadLetterer(stage Stage, name string) {
	q.metrics.deadLettered.WithLabelValues(string(stage), name)
}

func parseCount(h nats.Header) int {
	n, _ := strconv.Atoi(h.Get(batch.HeaderCount))
	return n
}
