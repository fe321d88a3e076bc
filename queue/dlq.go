package queue

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/sluicehq/sluice/queue/batch"
)

// DeadRecord is one record that can never succeed, with why.
type DeadRecord struct {
	Stage    string // fetch, transform or sink
	Name     string // the source, transform or sink name
	RecordID string
	Reason   string
	Origin   string      // subject the record came from, where a re-drive sends it
	Header   nats.Header // headers of its batch worth keeping (source, event, times)
	Data     []byte      // the record itself
}

// DeadLetter stores each record as its own DLQ message, waiting for every ack.
// The message ID is the record ID plus the stage, so a stage that crashes
// after dead-lettering and retries does not store it twice.
func (q *Queue) DeadLetter(ctx context.Context, recs []DeadRecord) error {
	msgs := make([]*nats.Msg, len(recs))
	for i, r := range recs {
		h := nats.Header{}
		for k, v := range r.Header {
			if k == batch.HeaderMsgID || k == batch.HeaderCount || k == batch.HeaderRequeued {
				continue
			}
			h[k] = append([]string(nil), v...)
		}
		h.Set(batch.HeaderMsgID, "dlq/"+r.Stage+"/"+r.RecordID)
		h.Set(batch.HeaderStage, r.Stage)
		h.Set(batch.HeaderReason, r.Reason)
		h.Set(batch.HeaderRecordID, r.RecordID)
		h.Set(batch.HeaderOrigin, r.Origin)
		attempts, _ := strconv.Atoi(h.Get(batch.HeaderAttempts))
		h.Set(batch.HeaderAttempts, strconv.Itoa(attempts+1))
		h.Set(batch.HeaderCount, "1")
		msgs[i] = &nats.Msg{Subject: DLQSubject(r.Stage, r.Name), Header: h, Data: batch.Encode([][]byte{r.Data})}
	}
	if err := q.Publish(ctx, msgs); err != nil {
		return fmt.Errorf("queue: dead-letter %d records: %w", len(recs), err)
	}
	for _, r := range recs {
		q.metrics.deadLettered.WithLabelValues(r.Stage, r.Name).Inc()
	}
	return nil
}

// DeadLetterBatch sends every record of a delivery to the DLQ with one reason.
// A body that is not a valid batch goes as one record, bytes untouched.
func (q *Queue) DeadLetterBatch(ctx context.Context, stage, name string, d *Delivery, reason string) error {
	recs, err := batch.Decode(d.Data)
	if err != nil {
		return q.DeadLetter(ctx, []DeadRecord{{
			Stage: stage, Name: name, RecordID: d.BatchID() + "/corrupt", Origin: d.Subject, Header: d.Header,
			Reason: reason + "; " + err.Error(), Data: d.Data,
		}})
	}
	dead := make([]DeadRecord, len(recs))
	for i, r := range recs {
		dead[i] = DeadRecord{Stage: stage, Name: name, RecordID: batch.RecordID(d.BatchID(), i), Reason: reason, Origin: d.Subject, Header: d.Header, Data: r}
	}
	return q.DeadLetter(ctx, dead)
}

func parseCount(h nats.Header) int {
	n, _ := strconv.Atoi(h.Get(batch.HeaderCount))
	return n
}

// DeclareDeadLetterer shows a stage's DLQ counter at 0 before its first
// record, so that alerts on its growth work from the start.
func (q *Queue) DeclareDeadLetterer(stage, name string) {
	q.metrics.deadLettered.WithLabelValues(stage, name)
}
