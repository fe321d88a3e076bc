package bigquery

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/actors/sink"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/queue/batch"
)

// routed is a delivery's records read far enough to know their tables.
type routed struct {
	outs    []batch.Output
	keys    []tableKey // zero when the record goes nowhere: why is in bad
	bad     []string
	skip    []bool             // set aside for later (setAside): not written now
	byTable map[tableKey]int64 // bytes of records per table
}

// route reads each record's table (the data is not decoded yet: that is
// Prepare's work, once the batch is taken).
func (s *Sink) route(d *sink.Delivery) *routed {
	recs := d.Records
	rt := &routed{outs: make([]batch.Output, len(recs)), keys: make([]tableKey, len(recs)), bad: make([]string, len(recs)), skip: make([]bool, len(recs)),
		byTable: map[tableKey]int64{}}
	// Rows decode their data anyway: one whose data was not last after
	// all fails there and is dead-lettered.
	read := batch.ReadOutput
	if d.Meta().Encoded == batch.EncodedDataLast {
		read = batch.ReadOutputDataLast
	}
	for i, rec := range recs {
		o, _, err := read(rec)
		if err != nil {
			rt.bad[i] = "not an output record: " + err.Error()
			continue
		}
		key := tableKey{dataset: o.Dataset, table: o.Table}
		if key.dataset == "" {
			key.dataset = s.cfg.Dataset
		}
		switch {
		case key.table == "":
			rt.bad[i] = "the output names no table (a policy for BigQuery sets table, and dataset unless the sink has one)"
			continue
		case key.dataset == "":
			rt.bad[i] = fmt.Sprintf("table %s: the output names no dataset and the sink has no default dataset", key.table)
			continue
		}
		rt.outs[i], rt.keys[i] = o, key
		rt.byTable[key] += int64(len(rec))
	}
	return rt
}

// Admit bounds what each table holds of the buffer, so that one that
// keeps failing never takes the room the others write through (the
// runner's hook, sink.Admitter). The rows of a table in trouble are set
// aside at once as a batch of their own when the batch has rows for other
// tables too (setAside): the rest is not held up by them. A table may hold
// at most half of buffer_bytes, and the tables in trouble together at
// most half (one batch is always taken, so a table in trouble is still
// tried). Over its share, a healthy table is waited for (it drains); a
// batch of tables in trouble goes back to OUT (giveBack) — OUT is the
// buffer, memory is not. err is ctx's when it ended.
//
// A batch taken is charged to its tables' shares at once (take), before
// the next batch is admitted.
func (s *Sink) Admit(ctx context.Context, d *sink.Delivery) (taken bool, err error) {
	rt := s.route(d)
	bo := backoff.New(20*time.Millisecond, 500*time.Millisecond)
	for {
		trouble, over, drain := s.shares(rt)
		switch {
		case len(trouble) > 0 && len(trouble) < len(rt.byTable):
			if s.setAside(ctx, d, rt, trouble) {
				continue // the rest, for healthy tables only
			}
		case over:
			if s.giveBack(ctx, d, trouble) {
				return false, nil
			}
		case drain:
			if !bo.Wait(ctx) {
				return false, ctx.Err()
			}
			continue
		}
		d.State = s.take(d, rt)
		return true, nil
	}
}

// shares names the tables of rt in trouble, with their trouble, says
// whether their rows would take the tables in trouble past their share
// (over), and whether a healthy table of rt holds its whole share already
// (drain: wait).
func (s *Sink) shares(rt *routed) (trouble map[tableKey]string, over, drain bool) {
	share := int64(s.cfg.BufferBytes) / 2
	s.mu.Lock()
	defer s.mu.Unlock()
	var inTrouble int64
	for k := range s.states {
		inTrouble += s.tableHeld[k]
	}
	for k, n := range rt.byTable {
		if t, bad := s.states[k]; bad {
			if trouble == nil {
				trouble = map[tableKey]string{}
			}
			trouble[k] = t
			over = over || inTrouble > 0 && inTrouble+n > share
		} else if held := s.tableHeld[k]; held > 0 && held+n > share {
			drain = true
		}
	}
	return trouble, over, drain
}

// setAside stores the rows of the tables in over as a batch of their own
// at the end of OUT, to be taken (or given back) on their own, and leaves
// the rest of d for the caller: a batch that mixes tables does not wait
// for its table in trouble. The original is acked once the rest is done.
// false: OUT has no room for them, and nothing was set aside.
func (s *Sink) setAside(ctx context.Context, d *sink.Delivery, rt *routed, over map[tableKey]string) bool {
	var idx []int
	for i, k := range rt.keys {
		if _, ok := over[k]; ok && rt.bad[i] == "" {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 || !s.requeueRows(ctx, d, rt.keys, idx) {
		return false
	}
	for _, i := range idx {
		rt.skip[i] = true
	}
	for k := range over {
		delete(rt.byTable, k)
	}
	return true
}

// requeueRows stores rows idx of d (their tables in keys) at the end of
// OUT as a batch of their own, named by their tables and first row; false
// when OUT had no room for them (nothing stored).
func (s *Sink) requeueRows(ctx context.Context, d *sink.Delivery, keys []tableKey, idx []int) bool {
	rows := make([][]byte, len(idx))
	tables := map[string]bool{}
	for n, i := range idx {
		rows[n] = d.Records[i]
		tables[keys[i].String()] = true
	}
	if err := d.RequeueRecords(ctx, rows, partName(slices.Collect(maps.Keys(tables)), idx[0])); err != nil {
		s.log.Warn("the rows of a table in trouble could not be set aside; their batch waits in memory", "batch", d.BatchID(), "err", err)
		return false
	}
	s.m.Retries.WithLabelValues("table_share").Inc()
	return true
}

// giveBack returns a batch of a table in trouble to OUT, to be delivered
// again after ack_wait. Before its last delivery (after which the queue
// would dead-letter it whole, as a batch the sink crashed on) it is
// requeued instead: stored again at the end of OUT with a fresh delivery
// count, so a table down for hours loses no row. When OUT has no room for
// the copy, the batch is kept (false) and waits in memory like any other.
func (s *Sink) giveBack(ctx context.Context, d *sink.Delivery, over map[tableKey]string) bool {
	if d.Delivered < s.run.MaxDeliveries()-1 {
		_ = d.Nak(s.cfg.AckWait.D())
		s.m.Retries.WithLabelValues("table_share").Inc()
		return true
	}
	if err := d.Requeue(ctx); err != nil {
		s.log.Warn("a batch of a table in trouble could not be requeued; it waits in memory", "batch", d.BatchID(), "tables", len(over), "err", err)
		return false
	}
	s.m.Retries.WithLabelValues("table_share").Inc()
	return true
}

// Crowded sets aside, as a batch of their own at the end of OUT, the rows
// of tables in trouble that batches of several tables still hold, while
// the runner waits for room in the buffer (sink.Admitter): those batches
// were taken before the table fell into trouble, and would keep their
// room (and their other tables' rows unacked) until it is back. Their
// batch is acked once its other rows are done. A row a writer is
// appending right now may land as well as its copy (at least once); the
// writer skips the others (pendingRow.ended). Batches of one table are
// left: the share bounds them (Admit).
func (s *Sink) Crowded(ctx context.Context) {
	s.mu.Lock()
	open := make([]*tracker, 0, len(s.open))
	for t := range s.open {
		if t.mixed {
			open = append(open, t)
		}
	}
	trouble := maps.Clone(s.states)
	s.mu.Unlock()
	if len(trouble) == 0 {
		return
	}
	for _, t := range open {
		var idx []int
		for i, k := range t.keys {
			if _, bad := trouble[k]; bad && !t.d.Ended(i) {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 || !s.requeueRows(ctx, t.d, t.keys, idx) {
			continue
		}
		for _, i := range idx {
			t.dones[i]("")
		}
	}
}

// partName names the rows of a batch set aside for tables, from its row
// first on: the same rows give the same name (a repeat after a crash is
// stored once), and rows of the same table set aside later (their first
// row is another) a new one.
func partName(tables []string, first int) string {
	sort.Strings(tables)
	return fmt.Sprintf("tables=%s@%d", strings.Join(tables, ","), first)
}

// releaseTable gives back n bytes of what table k holds of the buffer.
func (s *Sink) releaseTable(k tableKey, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tableHeld[k] -= n; s.tableHeld[k] <= 0 {
		delete(s.tableHeld, k)
	}
}
