package bigquery

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/sink"
)

// Deps are what a sink is given.
type Deps = sink.Deps

// Sink is one BigQuery sink actor: the runner (actors/sink) fetches,
// bounds the bytes held (buffer_bytes), keeps batches alive and acks;
// the sink admits each batch by its tables' shares (admit.go) and hands
// its rows to one writer per table.
type Sink struct {
	cfg    *Config
	run    *sink.Runner
	log    *slog.Logger
	m      *metrics
	rules  Rules
	tables *tables
	mw     *managedwriter.Client
	wctx   context.Context // of the table writers, which outlive a batch's write
	wg     *sync.WaitGroup

	mu      sync.Mutex
	writers map[tableKey]*tableWriter
	open    map[*tracker]bool // batches being written
	states  map[tableKey]string
	health  *actors.Health
	// tableHeld is what each table holds of the buffer (the bytes of its
	// records in the batches being written), for its share (admit).
	tableHeld map[tableKey]int64
}

// New builds a sink; Run runs it.
func New(cfg *Config, deps Deps) (*Sink, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink %q: %w", cfg.Name, err)
	}
	// Each OUT batch is written on its own (no linger): the table writers
	// gather rows of many batches into each append. The buffer bounds the
	// bytes of the batches being written: the consumer's MaxAckPending
	// alone let a fast OUT fill memory with decoded rows (a 1 GB bench
	// peaked at 2.2 GB).
	run, err := sink.New(sink.Options{Name: cfg.Name, AckWait: cfg.AckWait.D(), FetchAtOnce: 64,
		InFlightBytes: int64(cfg.BufferBytes), MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}, deps)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, run: run, log: run.Log(), rules: cfg.rules(),
		writers: map[tableKey]*tableWriter{}, open: map[*tracker]bool{}, states: map[tableKey]string{}, tableHeld: map[tableKey]int64{}}
	if s.m, err = newMetrics(run.Registry(), run.M); err != nil {
		return nil, fmt.Errorf("sink %q: metrics: %w", cfg.Name, err)
	}
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

// Run connects to BigQuery and runs the sink until ctx ends.
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
	// What an earlier run held ended with it (its batches were acked or
	// given back, its table writers stopped): a run after a restart
	// starts its own.
	s.writers, s.open, s.tableHeld = map[tableKey]*tableWriter{}, map[*tracker]bool{}, map[tableKey]int64{}
	s.mu.Unlock()
	s.m.buffered.Set(0)
	wctx, stopWriters := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	s.wctx, s.wg = wctx, &wg
	defer func() { stopWriters(); wg.Wait() }()
	return s.run.Run(ctx, s)
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
	s.m.State.Set(state)
	if s.health != nil {
		if len(lines) == 0 {
			s.health.SetHealthy()
		} else {
			s.health.SetUnhealthy("BigQuery: " + strings.Join(lines, "; ") + " (retrying; rows wait in OUT)")
		}
	}
}

// metrics are the BigQuery sink's own; what every sink exports is the
// runner's (sink.Metrics).
type metrics struct {
	*sink.Metrics
	rows, bytes, schemaUpdates, retries *prometheus.CounterVec
	dead                                *prometheus.CounterVec
	waiting                             *prometheus.GaugeVec
	buffered                            prometheus.Gauge
	appendSeconds                       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, common *sink.Metrics) (*metrics, error) {
	m := &metrics{
		Metrics:       common,
		rows:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_rows_total", Help: "Rows BigQuery accepted, by table."}, []string{"table"}),
		bytes:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_bytes_total", Help: "Encoded bytes of accepted rows, by table."}, []string{"table"}),
		schemaUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_schema_updates_total", Help: "Times a table was widened for new fields."}, []string{"table"}),
		retries:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_retries_total", Help: "Appends retried after an error, by table."}, []string{"table"}),
		dead:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bigquery_dlq_rows_total", Help: "Rows sent to the DLQ, by reason."}, []string{"reason"}),
		waiting:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_bigquery_rows_waiting_for_schema", Help: "Rows held until a widened schema reaches the write API, by table."}, []string{"table"}),
		buffered:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_bigquery_buffered_bytes", Help: "Bytes of OUT batches held in memory while their rows are written (at most buffer_bytes)."}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_bigquery_append_seconds", Help: "AppendRows latency.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	m.Retries.WithLabelValues("table_share")
	for _, r := range []string{"type_conflict", "row_error", "bad_row", "refused", "schema_wait"} {
		m.dead.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.rows, m.bytes, m.schemaUpdates, m.retries, m.dead, m.waiting, m.buffered, m.appendSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
