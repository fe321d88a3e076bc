package sink

import (
	"sync"
	"time"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// Delivery is one OUT batch the runner holds, with how each of its records
// ended. It is acked once every record ended: accepted by the destination,
// stored again elsewhere (set aside), or dead-lettered with its reason.
type Delivery struct {
	*queue.Delivery
	Records [][]byte
	// State is the writer's own (what it read of the batch at admission).
	State any

	fetched time.Time // when the source fetched its records (zero: not known)
	sink    string    // the sink's name, for the DLQ
	bad     error     // the body is not a record batch

	mu    sync.Mutex
	ended []bool
	left  int
	dead  []queue.DeadRecord
	done  chan struct{} // closed when every record ended
}

func newDelivery(sink string, d *queue.Delivery, recs [][]byte) *Delivery {
	nd := &Delivery{Delivery: d, Records: recs, sink: sink, ended: make([]bool, len(recs)), left: len(recs), done: make(chan struct{})}
	nd.fetched = d.Meta().FetchedAt
	if nd.left == 0 {
		close(nd.done)
	}
	return nd
}

// Fetched is when the source fetched the batch's records (zero when its
// header does not say).
func (d *Delivery) Fetched() time.Time { return d.fetched }

// RecordID is the ID of record i.
func (d *Delivery) RecordID(i int) string { return batch.RecordID(d.BatchID(), i) }

// End ends record i: accepted, or stored elsewhere, when deadReason is
// "", else for the DLQ with that reason. Only the first end of a record
// counts: true when this call ended it.
func (d *Delivery) End(i int, deadReason string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended[i] {
		return false
	}
	d.ended[i] = true
	if deadReason != "" {
		d.dead = append(d.dead, queue.DeadRecord{Stage: queue.StageSink, Name: d.sink, RecordID: d.RecordID(i),
			Reason: deadReason, Origin: d.Subject, Meta: d.Meta(), Data: d.Records[i]})
	}
	if d.left--; d.left == 0 {
		close(d.done)
	}
	return true
}

// Ended says whether record i has ended.
func (d *Delivery) Ended(i int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ended[i]
}

// Done is closed once every record ended.
func (d *Delivery) Done() <-chan struct{} { return d.done }

func (d *Delivery) deadRecords() []queue.DeadRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dead
}

// Record is record I of delivery D.
type Record struct {
	D *Delivery
	I int
}

// Data is the OUT record.
func (r Record) Data() []byte { return r.D.Records[r.I] }

// ID is the record's ID (its batch ID and index).
func (r Record) ID() string { return r.D.RecordID(r.I) }

// Accept ends the record as taken by the destination.
func (r Record) Accept() { r.D.End(r.I, "") }

// DeadLetter ends the record for the DLQ, with why.
func (r Record) DeadLetter(reason string) { r.D.End(r.I, reason) }

// Ended says whether the record has ended.
func (r Record) Ended() bool { return r.D.Ended(r.I) }

// Batch is what the runner asks a writer to write at once: the records of
// one or more deliveries that have not ended yet.
type Batch struct {
	Deliveries []*Delivery
	Records    []Record
	// State is the writer's own, kept across the writes of this batch (a
	// rendered request body).
	State any
	// Fails is how many writes of this batch in a row ended no record.
	Fails int

	bytes     int
	lingerEnd time.Time
}

// pending narrows Records to those not ended, and says how many.
func (b *Batch) pending() int {
	left := b.Records[:0]
	for _, r := range b.Records {
		if !r.Ended() {
			left = append(left, r)
		}
	}
	clear(b.Records[len(left):])
	b.Records = left
	return len(left)
}

func (b *Batch) add(d *Delivery) {
	b.Deliveries = append(b.Deliveries, d)
	for i := range d.Records {
		b.Records = append(b.Records, Record{D: d, I: i})
	}
}
