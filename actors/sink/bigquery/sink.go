package bigquery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// Deps are what a sink is given.
type Deps struct {
	Queue   *queue.Queue
	Logger  *slog.Logger
	Metrics prometheus.Registerer // already labelled with the sink's name
}

// Sink is one BigQuery sink actor.
type Sink struct {
	cfg    *Config
	q      *queue.Queue
	log    *slog.Logger
	m      *metrics
	rules  Rules
	tables *tables
	mw     *managedwriter.Client

	// held bounds the bytes of the OUT batches being written: the
	// consumer's MaxAckPending alone let a fast OUT fill memory with
	// decoded rows (a 1 GB bench peaked at 2.2 GB).
	held *semaphore.Weighted

	mu      sync.Mutex
	writers map[tableKey]*tableWriter
	open    map[*tracker]bool // deliveries not yet acked
	states  map[tableKey]string
	health  *actors.Health
	// tableHeld is what each table holds of the buffer (the bytes of its
	// records in the batches being written), for its share (admit).
	tableHeld map[tableKey]int64
}

// maxDeliveries is how often an OUT batch may be delivered before the
// queue dead-letters it whole (the sink crashed on it each time).
const maxDeliveries = 10

// New builds a sink; Run runs it.
func New(cfg *Config, deps Deps) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink %q: %w", cfg.Name, err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Sink{cfg: cfg, q: deps.Queue, log: log.With("sink", cfg.Name), rules: cfg.rules(),
		writers: map[tableKey]*tableWriter{}, open: map[*tracker]bool{}, states: map[tableKey]string{}, tableHeld: map[tableKey]int64{},
		held: semaphore.NewWeighted(int64(cfg.BufferBytes))}
	m, err := newMetrics(reg, s.oldestHeldSeconds)
	if err != nil {
		return nil, fmt.Errorf("sink %q: metrics: %w", cfg.Name, err)
	}
	s.m = m
	return s, nil
}

// clients connects to BigQuery, or to the emulator the config names.
func (s *Sink) clients(ctx context.Context) (*bigquery.Client, *managedwriter.Client, error) {
	var rest, write []option.ClientOption
	switch {
	case s.cfg.Endpoint != "":
		rest = []option.ClientOption{option.WithEndpoint(strings.TrimRight(s.cfg.Endpoint, "/") + "/"), option.WithoutAuthentication()}
		write = []option.ClientOption{option.WithEndpoint(s.cfg.WriteEndpoint), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
	case s.cfg.CredentialsFile != "":
		rest = []option.ClientOption{option.WithCredentialsFile(s.cfg.CredentialsFile)}
		write = rest
	}
	bq, err := bigquery.NewClient(ctx, s.cfg.Project, rest...)
	if err != nil {
		return nil, nil, fmt.Errorf("bigquery client: %w", err)
	}
	if s.cfg.Location != "" {
		bq.Location = s.cfg.Location
	}
	mw, err := managedwriter.NewClient(ctx, s.cfg.Project, write...)
	if err != nil {
		bq.Close()
		return nil, nil, fmt.Errorf("bigquery write client: %w", err)
	}
	return bq, mw, nil
}

// Run pulls the sink's batches, splits them by table and acks each batch
// once every row of it was accepted by BigQuery or sent to the DLQ.
func (s *Sink) Run(ctx context.Context, h *actors.Health) error {
	bq, mw, err := s.clients(ctx)
	if err != nil {
		return fmt.Errorf("sink %q: %w", s.cfg.Name, err)
	}
	defer bq.Close()
	defer mw.Close()
	partition := s.cfg.Partition
	if partition == "none" {
		partition = ""
	}
	s.mw = mw
	s.tables = &tables{client: bq, create: *s.cfg.CreateTables, location: s.cfg.Location, partition: partition, partitionField: s.cfg.PartitionField,
		widened: func(dataset, table string) {
			s.m.schemaUpdates.WithLabelValues(tableKey{dataset, table}.String()).Inc()
		}}
	s.mu.Lock()
	s.health = h
	s.mu.Unlock()
	cons, err := s.q.Consumer(ctx, queue.ConsumerConfig{
		Stream: queue.StreamOut, Durable: "sink-" + s.cfg.Name, Subject: queue.OutSubject(s.cfg.Name),
		AckWait: s.cfg.AckWait.D(), MaxAckPending: 1024, Stage: "sink", Name: s.cfg.Name, MaxDeliveries: maxDeliveries,
	})
	if err != nil {
		return fmt.Errorf("sink %q: %w", s.cfg.Name, err)
	}
	defer cons.Close()
	wctx, stopWriters := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stopWriters(); wg.Wait() }()
	go s.keepAlive(wctx)
	for {
		ds, err := cons.FetchReady(ctx, 64, time.Second)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, queue.ErrNoMessage) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sink %q: %w", s.cfg.Name, err)
		}
		for i, d := range ds {
			rt := s.route(d)
			var taken bool
			err := s.keepAliveWhile(ds[i:], func() (err error) {
				if taken, err = s.admit(ctx, d, rt); err != nil || !taken {
					return err
				}
				return s.acquire(ctx, s.weight(d))
			})
			if err != nil {
				queue.GiveBack(ds[i:]) // stopping; the batches go back unacked
				return nil
			}
			if !taken {
				continue
			}
			s.m.buffered.Add(float64(s.weight(d)))
			s.handle(wctx, &wg, d, rt)
		}
	}
}

// keepAliveWhile runs wait (admit and the buffer's room) while telling
// JetStream, every third of ack_wait, that the deliveries fetched and not
// yet taken are being worked on: they were handed out together, and
// while one waits the others' ack-wait clocks run — without this they
// came again while still here, and were written twice.
func (s *Sink) keepAliveWhile(ds []*queue.Delivery, wait func() error) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(s.cfg.AckWait.D() / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				for _, d := range ds {
					_ = d.InProgress() // refused once d was given back or acked
				}
			}
		}
	}()
	return wait()
}

// weight is what a delivery takes of the buffer: its bytes, at most all.
func (s *Sink) weight(d *queue.Delivery) int64 {
	return min(int64(len(d.Data)), int64(s.cfg.BufferBytes))
}

// tracker counts a delivery's rows until each has ended.
type tracker struct {
	d       *queue.Delivery
	recs    [][]byte
	charged map[tableKey]int64 // of tableHeld, given back as each table's rows end
	leftBy  map[tableKey]int   // rows not yet ended, by table
	keys    []tableKey         // each row's table
	ended   []bool             // each row's end, once (done is called again by a writer after evict)
	dones   []func(string)
	mixed   bool      // rows for more than one table
	fetched time.Time // when the source fetched its records (zero: not known)
	mu      sync.Mutex
	left    int
	dead    []queue.DeadRecord
}

// routed is a delivery's records read far enough to know their tables.
type routed struct {
	recs    [][]byte
	err     error // not a batch
	outs    []batch.Output
	keys    []tableKey // zero when the record goes nowhere: why is in bad
	bad     []string
	skip    []bool             // set aside for later (setAside): not written now
	byTable map[tableKey]int64 // bytes of records per table
}

// route decodes a delivery and reads each record's table (the data is not
// decoded yet: that is Prepare's work, once the batch is taken).
func (s *Sink) route(d *queue.Delivery) *routed {
	recs, err := batch.Decode(d.Data)
	if err != nil {
		return &routed{err: err}
	}
	rt := &routed{recs: recs, outs: make([]batch.Output, len(recs)), keys: make([]tableKey, len(recs)), bad: make([]string, len(recs)), skip: make([]bool, len(recs)),
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

// admit bounds what each table holds of the buffer, so that one that
// keeps failing never takes the room the others write through. The rows
// of a table in trouble are set aside at once as a batch of their own
// when the batch has rows for other tables too (setAside): the rest is
// not held up by them. A table may hold at most half of buffer_bytes, and
// the tables in trouble together at most half (one batch is always taken,
// so a table in trouble is still tried). Over its share, a healthy table
// is waited for (it drains); a batch of tables in trouble goes back to OUT
// (giveBack) — OUT is the buffer, memory is not. err is ctx's when it
// ended.
func (s *Sink) admit(ctx context.Context, d *queue.Delivery, rt *routed) (taken bool, err error) {
	bo := newBackoff(20*time.Millisecond, 500*time.Millisecond)
	for {
		trouble, over, drain := s.shares(rt)
		switch {
		case len(trouble) > 0 && len(trouble) < len(rt.byTable):
			if s.setAside(ctx, d, rt, trouble) {
				continue // the rest, for healthy tables only
			}
			return true, nil
		case over:
			return !s.giveBack(ctx, d, trouble), nil
		case !drain:
			return true, nil
		}
		if !actors.Sleep(ctx, bo.next()) {
			return false, ctx.Err()
		}
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
func (s *Sink) setAside(ctx context.Context, d *queue.Delivery, rt *routed, over map[tableKey]string) bool {
	var idx []int
	for i, k := range rt.keys {
		if _, ok := over[k]; ok && rt.bad[i] == "" {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 || !s.requeueRows(ctx, d, rt.recs, rt.keys, idx) {
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

// requeueRows stores rows idx of d (recs, their tables in keys) at the end
// of OUT as a batch of their own, named by their tables and first row;
// false when OUT had no room for them (nothing stored).
func (s *Sink) requeueRows(ctx context.Context, d *queue.Delivery, recs [][]byte, keys []tableKey, idx []int) bool {
	rows := make([][]byte, len(idx))
	tables := map[string]bool{}
	for n, i := range idx {
		rows[n] = recs[i]
		tables[keys[i].String()] = true
	}
	if err := d.RequeueRecords(ctx, rows, partName(slices.Collect(maps.Keys(tables)), idx[0])); err != nil {
		s.log.Warn("the rows of a table in trouble could not be set aside; their batch waits in memory", "batch", d.BatchID(), "err", err)
		return false
	}
	s.m.sinkRetries.WithLabelValues("table_share").Inc()
	return true
}

// giveBack returns a batch of a table in trouble to OUT, to be delivered
// again after ack_wait. Before its last delivery (after which the queue
// would dead-letter it whole, as a batch the sink crashed on) it is
// requeued instead: stored again at the end of OUT with a fresh delivery
// count, so a table down for hours loses no row. When OUT has no room for
// the copy, the batch is kept (false) and waits in memory like any other.
func (s *Sink) giveBack(ctx context.Context, d *queue.Delivery, over map[tableKey]string) bool {
	if d.Delivered < maxDeliveries-1 {
		_ = d.Nak(s.cfg.AckWait.D())
		s.m.sinkRetries.WithLabelValues("table_share").Inc()
		return true
	}
	if err := d.Requeue(ctx); err != nil {
		s.log.Warn("a batch of a table in trouble could not be requeued; it waits in memory", "batch", d.BatchID(), "tables", len(over), "err", err)
		return false
	}
	s.m.sinkRetries.WithLabelValues("table_share").Inc()
	return true
}

func (s *Sink) handle(ctx context.Context, wg *sync.WaitGroup, d *queue.Delivery, rt *routed) {
	if rt.err != nil {
		s.finish(ctx, &tracker{d: d}, func() error {
			return s.q.DeadLetterBatch(ctx, "sink", s.cfg.Name, d, "not a batch: "+rt.err.Error())
		})
		return
	}
	t := &tracker{d: d, recs: rt.recs, left: len(rt.recs), charged: rt.byTable, leftBy: map[tableKey]int{},
		keys: rt.keys, ended: make([]bool, len(rt.recs)), dones: make([]func(string), len(rt.recs)), mixed: len(rt.byTable) > 1,
		fetched: fetchedAt(d)}
	for i, k := range rt.keys {
		if _, ok := rt.byTable[k]; ok && rt.bad[i] == "" && !rt.skip[i] {
			t.leftBy[k]++
		}
	}
	s.mu.Lock()
	s.open[t] = true
	for k, n := range rt.byTable {
		s.tableHeld[k] += n
	}
	s.mu.Unlock()
	perTable := map[tableKey][]pendingRow{}
	for i := range rt.recs {
		done := s.doneFunc(ctx, t, i, rt.keys[i])
		t.dones[i] = done
		key := rt.keys[i]
		if rt.bad[i] != "" {
			done(rt.bad[i])
			continue
		}
		if rt.skip[i] {
			done("") // stored again by setAside
			continue
		}
		row, err := s.rules.Prepare(&rt.outs[i])
		if err != nil {
			s.m.dead.WithLabelValues("bad_row").Inc()
			done(fmt.Sprintf("table %s: %v", key, err))
			continue
		}
		perTable[key] = append(perTable[key], pendingRow{row: row, partition: rt.outs[i].Partition, done: done, ended: t.endedFunc(i)})
	}
	if len(rt.recs) == 0 {
		s.finish(ctx, t, nil)
	}
	for key, rows := range perTable {
		s.writer(ctx, wg, key).enqueue(rows)
	}
}

func (s *Sink) writer(ctx context.Context, wg *sync.WaitGroup, key tableKey) *tableWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.writers[key]
	if w == nil {
		w = newTableWriter(s, key)
		s.writers[key] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	return w
}

// doneFunc ends row i of t, for table key; the last row of a table gives
// back what the table held of the buffer (a table's share must not stay
// taken by batches that wait on another table), and the last row of all
// acks the batch, after its dead rows are stored in the DLQ.
func (s *Sink) doneFunc(ctx context.Context, t *tracker, i int, key tableKey) func(string) {
	return func(reason string) {
		t.mu.Lock()
		if t.ended[i] {
			t.mu.Unlock()
			return
		}
		t.ended[i] = true
		if reason != "" {
			s.m.dlq.Inc()
			t.dead = append(t.dead, queue.DeadRecord{Stage: queue.StageSink, Name: s.cfg.Name, RecordID: batch.RecordID(t.d.BatchID(), i),
				Reason: reason, Origin: t.d.Subject, Meta: t.d.Meta(), Data: t.recs[i]})
		}
		var release int64
		if n, ok := t.leftBy[key]; ok {
			if t.leftBy[key] = n - 1; n == 1 {
				release = t.charged[key]
				delete(t.charged, key)
			}
		}
		t.left--
		last := t.left == 0
		dead := t.dead
		t.mu.Unlock()
		if release > 0 {
			s.releaseTable(key, release)
		}
		if !last {
			return
		}
		go s.finish(ctx, t, func() error {
			if len(dead) == 0 {
				return nil
			}
			return s.q.DeadLetter(ctx, dead)
		})
	}
}

// endedFunc says whether row i of t has ended.
func (t *tracker) endedFunc(i int) func() bool {
	return func() bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.ended[i]
	}
}

// acquire takes n bytes of the buffer, waiting for room. While it waits,
// every second, the rows of tables in trouble that batches of several
// tables hold are set aside (evict): those batches were taken before the
// table fell into trouble, and would keep their room (and their other
// tables' rows unacked) until it is back.
func (s *Sink) acquire(ctx context.Context, n int64) error {
	for {
		wait, cancel := context.WithTimeout(ctx, time.Second)
		err := s.held.Acquire(wait, n)
		cancel()
		if err == nil || ctx.Err() != nil {
			return ctx.Err()
		}
		s.evict(ctx)
	}
}

// evict sets aside, as a batch of their own at the end of OUT, the rows
// of tables in trouble that batches of several tables still hold; their
// batch is acked once its other rows are done. A row a writer is
// appending right now may land as well as its copy (at least once); the
// writer skips the others (pendingRow.ended). Batches of one table are
// left: the share bounds them (admit).
func (s *Sink) evict(ctx context.Context) {
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
		t.mu.Lock()
		for i, k := range t.keys {
			if _, bad := trouble[k]; bad && !t.ended[i] && t.dones[i] != nil {
				idx = append(idx, i)
			}
		}
		t.mu.Unlock()
		if len(idx) == 0 || !s.requeueRows(ctx, t.d, t.recs, t.keys, idx) {
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

// finish stores what must be stored first, then acks the batch; it
// retries the store until it succeeds or the sink stops (then the batch
// comes back and its rows are written again: at least once).
func (s *Sink) finish(ctx context.Context, t *tracker, store func() error) {
	defer func() {
		t.mu.Lock()
		charged := t.charged
		t.charged = nil
		t.mu.Unlock()
		for k, n := range charged {
			s.releaseTable(k, n)
		}
		s.held.Release(s.weight(t.d))
		s.m.buffered.Sub(float64(s.weight(t.d)))
	}()
	bo := newBackoff(100*time.Millisecond, 5*time.Second)
	for store != nil {
		err := store()
		if err == nil {
			break
		}
		wait := bo.next()
		s.log.Error("dead-lettering failed; retrying", "err", err, "next_in", wait)
		if !actors.Sleep(ctx, wait) {
			return
		}
	}
	_ = t.d.Ack()
	if !t.fetched.IsZero() {
		s.m.delivery.Observe(time.Since(t.fetched).Seconds())
	}
	s.mu.Lock()
	delete(s.open, t)
	s.mu.Unlock()
}

// fetchedAt is when the source fetched a batch's records (zero when its
// header does not say).
func fetchedAt(d *queue.Delivery) time.Time { return d.Meta().FetchedAt }

// oldestHeldSeconds is the age of the oldest record the sink holds and
// has not delivered (since its fetch at the source); 0 when none.
func (s *Sink) oldestHeldSeconds() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest time.Time
	for t := range s.open {
		if !t.fetched.IsZero() && (oldest.IsZero() || t.fetched.Before(oldest)) {
			oldest = t.fetched
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest).Seconds()
}

// keepAlive tells JetStream that batches whose rows wait (for a table
// schema to propagate, for BigQuery to come back) are still being worked
// on, so they are not delivered again meanwhile.
func (s *Sink) keepAlive(ctx context.Context) {
	t := time.NewTicker(s.cfg.AckWait.D() / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		open := make([]*tracker, 0, len(s.open))
		for tr := range s.open {
			open = append(open, tr)
		}
		s.mu.Unlock()
		for _, tr := range open {
			_ = tr.d.InProgress()
		}
	}
}

// setState records a table's trouble ("" when it is fine) and shows every
// table in trouble on the sink's health, so /readyz says why.
func (s *Sink) setState(key tableKey, problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.states[key] == problem {
		return
	}
	if problem == "" {
		delete(s.states, key)
	} else {
		s.states[key] = problem
	}
	var lines []string
	for k, p := range s.states {
		lines = append(lines, fmt.Sprintf("table %s: %s", k, p))
	}
	sort.Strings(lines)
	state := 0.0
	if len(lines) > 0 {
		state = 1
	}
	s.m.state.Set(state)
	if s.health != nil {
		if len(lines) == 0 {
			s.health.SetHealthy()
		} else {
			s.health.SetUnhealthy("BigQuery: " + strings.Join(lines, "; ") + " (retrying; rows wait in OUT)")
		}
	}
}

type metrics struct {
	rows, bytes, schemaUpdates, retries *prometheus.CounterVec
	dead                                *prometheus.CounterVec
	waiting                             *prometheus.GaugeVec
	buffered                            prometheus.Gauge
	appendSeconds                       prometheus.Histogram
	// What every sink exports (same names and help as the Splunk sink's),
	// for sluice status, the dashboard and the alerts.
	events, eventBytes, dlq prometheus.Counter
	sinkRetries             *prometheus.CounterVec
	state                   prometheus.Gauge
	delivery                prometheus.Histogram
	oldestHeld              prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, oldest func() float64) (*metrics, error) {
	m := &metrics{
		rows:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_rows_total", Help: "Rows BigQuery accepted, by table."}, []string{"table"}),
		bytes:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_bytes_total", Help: "Encoded bytes of accepted rows, by table."}, []string{"table"}),
		schemaUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_schema_updates_total", Help: "Times a table was widened for new fields."}, []string{"table"}),
		retries:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_retries_total", Help: "Appends retried after an error, by table."}, []string{"table"}),
		dead:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_dlq_rows_total", Help: "Rows sent to the DLQ, by reason."}, []string{"reason"}),
		waiting:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_bigquery_rows_waiting_for_schema", Help: "Rows held until a widened schema reaches the write API, by table."}, []string{"table"}),
		buffered:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_bigquery_buffered_bytes", Help: "Bytes of OUT batches held in memory while their rows are written (at most buffer_bytes)."}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_bigquery_append_seconds", Help: "AppendRows latency.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		events:        prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_events_total", Help: "Events the destination accepted (or indexed, with acks on)."}),
		eventBytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_bytes_total", Help: "Bytes of accepted events, before compression."}),
		sinkRetries:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_retries_total", Help: "Requests retried, by reason."}, []string{"reason"}),
		dlq:           prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_dlq_events_total", Help: "Events the destination refused for good, sent to the DLQ."}),
		state:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_sink_state", Help: "0 up, 1 retrying, 2 paused (destination refuses the token, index or channel)."}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_delivery_latency_seconds",
			Help: "From fetching a batch at the source to the destination accepting it.", Buckets: prometheus.ExponentialBuckets(0.01, 1.5, 30)}),
		oldestHeld: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_sink_oldest_undelivered_seconds",
			Help: "Age of the oldest record the sink holds and has not delivered yet (since it was fetched)."}, oldest),
	}
	m.sinkRetries.WithLabelValues("network")
	m.sinkRetries.WithLabelValues("table_share")
	for _, r := range []string{"type_conflict", "row_error", "bad_row", "refused", "schema_wait"} {
		m.dead.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.rows, m.bytes, m.schemaUpdates, m.retries, m.dead, m.waiting, m.buffered, m.appendSeconds,
		m.events, m.eventBytes, m.sinkRetries, m.dlq, m.state, m.delivery, m.oldestHeld} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
