package bigquery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/actors/sink"
)

// tracker follows a delivery's rows, by table, until each has ended.
type tracker struct {
	d       *sink.Delivery
	rt      *routed
	mu      sync.Mutex
	charged map[tableKey]int64 // of tableHeld, given back as each table's rows end
	leftBy  map[tableKey]int   // rows not yet ended, by table
	keys    []tableKey         // each row's table
	dones   []func(string)     // each row's end
	mixed   bool               // rows for more than one table
}

// Taken hands the batch's rows to their tables' writers, in the order
// the batches were fetched (sink.Admitter).
func (s *Sink) Taken(b *sink.Batch) {
	for _, d := range b.Deliveries {
		s.handle(d.State.(*tracker))
	}
}

// Write waits until each row of the batch ended (sink.Writer). The rows
// of a table that waits (for a widened schema, for BigQuery to come back)
// are retried by its writer: the runner keeps the batch alive meanwhile.
func (s *Sink) Write(ctx context.Context, b *sink.Batch) time.Duration {
	defer func() {
		for _, d := range b.Deliveries {
			s.close(d.State.(*tracker))
		}
	}()
	for _, d := range b.Deliveries {
		select {
		case <-d.Done():
		case <-ctx.Done():
		}
	}
	return 0
}

// take charges a delivery's rows to their tables' shares, and shows it to
// Crowded.
func (s *Sink) take(d *sink.Delivery, rt *routed) *tracker {
	s.m.buffered.Add(s.weight(d))
	t := &tracker{d: d, rt: rt, charged: rt.byTable, leftBy: map[tableKey]int{}, keys: rt.keys,
		dones: make([]func(string), len(d.Records)), mixed: len(rt.byTable) > 1}
	for i, k := range rt.keys {
		if _, ok := rt.byTable[k]; ok && rt.bad[i] == "" && !rt.skip[i] {
			t.leftBy[k]++
		}
		t.dones[i] = s.doneFunc(t, i, k)
	}
	s.mu.Lock()
	s.open[t] = true
	for k, n := range rt.byTable {
		s.tableHeld[k] += n
	}
	s.mu.Unlock()
	return t
}

// handle hands a delivery's rows to their tables' writers.
func (s *Sink) handle(t *tracker) {
	rt := t.rt
	perTable := map[tableKey][]pendingRow{}
	for i, key := range rt.keys {
		done := t.dones[i]
		switch {
		case rt.bad[i] != "":
			done(rt.bad[i])
			continue
		case rt.skip[i]:
			done("") // stored again by setAside
			continue
		case t.d.Ended(i):
			continue // set aside by Crowded
		}
		row, err := s.rules.Prepare(&rt.outs[i])
		if err != nil {
			s.m.dead.WithLabelValues("bad_row").Inc()
			done(fmt.Sprintf("table %s: %v", key, err))
			continue
		}
		perTable[key] = append(perTable[key], pendingRow{row: row, partition: rt.outs[i].Partition, done: done, ended: t.endedFunc(i)})
	}
	for key, rows := range perTable {
		s.writer(key).enqueue(rows)
	}
}

// close gives back what a batch's tracker still holds of their tables'
// shares, once the batch is done or the sink stops.
func (s *Sink) close(t *tracker) {
	t.mu.Lock()
	charged := t.charged
	t.charged = nil
	t.mu.Unlock()
	for k, n := range charged {
		s.releaseTable(k, n)
	}
	s.mu.Lock()
	if s.open[t] {
		delete(s.open, t)
		s.m.buffered.Sub(s.weight(t.d))
	}
	s.mu.Unlock()
}

func (s *Sink) writer(key tableKey) *tableWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.writers[key]
	if w == nil {
		w = newTableWriter(s, key)
		s.writers[key] = w
		s.wg.Add(1)
		go func() { defer s.wg.Done(); w.run(s.wctx) }()
	}
	return w
}

// doneFunc ends row i of t, for table key; the last row of a table gives
// back what the table held of the buffer (a table's share must not stay
// taken by batches that wait on another table). The runner acks the batch
// once every row ended, after its dead rows are stored in the DLQ.
func (s *Sink) doneFunc(t *tracker, i int, key tableKey) func(string) {
	return func(reason string) {
		if !t.d.End(i, reason) {
			return // ended before (set aside, then done by its writer)
		}
		var release int64
		t.mu.Lock()
		if n, ok := t.leftBy[key]; ok {
			if t.leftBy[key] = n - 1; n == 1 {
				release = t.charged[key]
				delete(t.charged, key)
			}
		}
		t.mu.Unlock()
		if release > 0 {
			s.releaseTable(key, release)
		}
	}
}

// endedFunc says whether row i of t has ended.
func (t *tracker) endedFunc(i int) func() bool {
	return func() bool { return t.d.Ended(i) }
}

// weight is what a delivery takes of the buffer: its bytes, at most all.
func (s *Sink) weight(d *sink.Delivery) float64 {
	return float64(min(int64(len(d.Data)), int64(s.cfg.BufferBytes)))
}
