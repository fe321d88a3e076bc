package bigquery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/queue"
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
}

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
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("sink %q: metrics: %w", cfg.Name, err)
	}
	return &Sink{cfg: cfg, q: deps.Queue, log: log.With("sink", cfg.Name), m: m, rules: cfg.rules(),
		writers: map[tableKey]*tableWriter{}, open: map[*tracker]bool{}, states: map[tableKey]string{},
		held: semaphore.NewWeighted(int64(cfg.BufferBytes))}, nil
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
		AckWait: s.cfg.AckWait.D(), MaxAckPending: 1024, Stage: "sink", Name: s.cfg.Name, MaxDeliveries: 10,
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
		for _, d := range ds {
			if err := s.held.Acquire(ctx, s.weight(d)); err != nil {
				return nil // stopping; the batch goes back unacked
			}
			s.m.buffered.Add(float64(s.weight(d)))
			s.handle(wctx, &wg, d)
		}
	}
}

// weight is what a delivery takes of the buffer: its bytes, at most all.
func (s *Sink) weight(d *queue.Delivery) int64 {
	return min(int64(len(d.Data)), int64(s.cfg.BufferBytes))
}

// tracker counts a delivery's rows until each has ended.
type tracker struct {
	d    *queue.Delivery
	recs [][]byte
	mu   sync.Mutex
	left int
	dead []queue.DeadRecord
}

func (s *Sink) handle(ctx context.Context, wg *sync.WaitGroup, d *queue.Delivery) {
	recs, err := batch.Decode(d.Data)
	if err != nil {
		s.finish(ctx, &tracker{d: d}, func() error {
			return s.q.DeadLetterBatch(ctx, "sink", s.cfg.Name, d, "not a batch: "+err.Error())
		})
		return
	}
	t := &tracker{d: d, recs: recs, left: len(recs)}
	s.mu.Lock()
	s.open[t] = true
	s.mu.Unlock()
	perTable := map[tableKey][]pendingRow{}
	// Rows decode their data anyway: one whose data was not last after
	// all fails there and is dead-lettered.
	read := batch.ReadOutput
	if d.Header.Get(batch.HeaderEncoded) == batch.EncodedDataLast {
		read = batch.ReadOutputDataLast
	}
	for i, rec := range recs {
		done := s.doneFunc(ctx, t, i)
		o, _, err := read(rec)
		if err != nil {
			done("not an output record: " + err.Error())
			continue
		}
		key := tableKey{dataset: o.Dataset, table: o.Table}
		if key.dataset == "" {
			key.dataset = s.cfg.Dataset
		}
		switch {
		case key.table == "":
			done("the output names no table (a policy for BigQuery sets table, and dataset unless the sink has one)")
			continue
		case key.dataset == "":
			done(fmt.Sprintf("table %s: the output names no dataset and the sink has no default dataset", key.table))
			continue
		}
		row, err := s.rules.Prepare(&o)
		if err != nil {
			s.m.dead.WithLabelValues("bad_row").Inc()
			done(fmt.Sprintf("table %s: %v", key, err))
			continue
		}
		perTable[key] = append(perTable[key], pendingRow{row: row, partition: o.Partition, done: done})
	}
	if len(recs) == 0 {
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

// doneFunc ends row i of t; the last one acks the batch, after its dead
// rows are stored in the DLQ.
func (s *Sink) doneFunc(ctx context.Context, t *tracker, i int) func(string) {
	return func(reason string) {
		t.mu.Lock()
		if reason != "" {
			s.m.dlq.Inc()
			t.dead = append(t.dead, queue.DeadRecord{Stage: "sink", Name: s.cfg.Name, RecordID: batch.RecordID(t.d.ID, i),
				Reason: reason, Origin: t.d.Subject, Header: t.d.Header, Data: t.recs[i]})
		}
		t.left--
		last := t.left == 0
		dead := t.dead
		t.mu.Unlock()
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

// finish stores what must be stored first, then acks the batch; it
// retries the store until it succeeds or the sink stops (then the batch
// comes back and its rows are written again: at least once).
func (s *Sink) finish(ctx context.Context, t *tracker, store func() error) {
	defer func() {
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
	s.mu.Lock()
	delete(s.open, t)
	s.mu.Unlock()
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
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
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
	}
	m.sinkRetries.WithLabelValues("network")
	for _, r := range []string{"type_conflict", "row_error", "bad_row", "refused", "schema_wait"} {
		m.dead.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.rows, m.bytes, m.schemaUpdates, m.retries, m.dead, m.waiting, m.buffered, m.appendSeconds,
		m.events, m.eventBytes, m.sinkRetries, m.dlq, m.state} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
