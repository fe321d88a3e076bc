// Package bqtest is a stand-in for BigQuery that the real Go clients cannot
// tell from the service: the REST surface the bigquery package uses for
// datasets and tables (insert, get, patch with If-Match etags, delete, and a
// rows listing), and the Storage Write API's BigQueryWrite gRPC service
// (the _default stream, AppendRows with a writer schema on the first
// request of each connection, rows decoded with dynamicpb). What makes
// BigQuery hard to write to is reproduced on purpose: a widened table
// reaches the write API only after a propagation delay, and until then a
// row with the new fields is refused with SCHEMA_MISMATCH_EXTRA_FIELDS;
// once it has, the next append result carries the updated schema. Faults
// can be injected: unavailable, slow, and per-row errors.
package bqtest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/grpc"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
)

// Options configure a stand-in.
type Options struct {
	Project string
	// Addr for REST and GRPCAddr for the write API; default 127.0.0.1:0.
	Addr, GRPCAddr string
	// Propagation is how long a widened schema takes to reach the write API.
	Propagation time.Duration
	// Discard counts appended rows without keeping them (for benchmarks).
	Discard bool
	// MaxRequest is the largest AppendRows request taken, in bytes;
	// default BigQuery's 10 MB (10,485,760). Tests lower it to show the
	// limit with fewer rows.
	MaxRequest int
}

// Server is a running stand-in. Point the bigquery client at URL (with
// option.WithEndpoint(URL+"/")) and managedwriter at GRPCAddr (plaintext).
type Server struct {
	URL      string
	GRPCAddr string
	opts     Options
	http     *http.Server
	grpc     *grpc.Server

	mu         sync.Mutex
	datasets   map[string]*dataset // "project.dataset"
	faults     faults
	appends    int
	tableReads int
	streams    map[string]*writeStream // created streams by name
	nextStream int
}

type dataset struct {
	meta   *bq.Dataset
	tables map[string]*table
}

type table struct {
	meta    *bq.Table // what REST shows: the newest schema, etag
	version int       // bumped by every change; in the etag
	// The write API's view of the schema: each change reaches it
	// Propagation after it was made, on its own, so a table widened again
	// and again still shows the write API the older widenings in time.
	writeSchema *bq.TableSchema
	pending     []pendingSchema // oldest first
	rows        []map[string]any
	count       int // rows appended, kept or not
}

// NewServer starts a stand-in.
func NewServer(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.GRPCAddr == "" {
		opts.GRPCAddr = "127.0.0.1:0"
	}
	if opts.MaxRequest == 0 {
		opts.MaxRequest = maxRequest
	}
	hl, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("bqtest: listen: %w", err)
	}
	gl, err := net.Listen("tcp", opts.GRPCAddr)
	if err != nil {
		hl.Close()
		return nil, fmt.Errorf("bqtest: listen: %w", err)
	}
	s := &Server{opts: opts, URL: "http://" + hl.Addr().String(), GRPCAddr: gl.Addr().String(), datasets: map[string]*dataset{}, streams: map[string]*writeStream{}}
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	s.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(32 << 20)) // so that BigQuery's own 10 MB limit is the one that answers
	storagepb.RegisterBigQueryWriteServer(s.grpc, &writeServer{s: s})
	go s.http.Serve(hl)
	go s.grpc.Serve(gl)
	return s, nil
}

// Close stops both listeners.
func (s *Server) Close() {
	s.grpc.Stop()
	_ = s.http.Close()
}

// Rows returns a copy of a table's rows, in the order they were appended;
// TIMESTAMP values are time.Time.
func (s *Server) Rows(project, datasetID, tableID string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tableLocked(project, datasetID, tableID)
	if t == nil {
		return nil
	}
	return append([]map[string]any(nil), t.rows...)
}

// Tables lists a project's tables as "dataset.table", sorted.
func (s *Server) Tables(project string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for key, d := range s.datasets {
		p, ds, _ := strings.Cut(key, ".")
		if p != project {
			continue
		}
		for t := range d.tables {
			out = append(out, ds+"."+t)
		}
	}
	sort.Strings(out)
	return out
}

// DumpFile writes a table ("dataset.table", as Tables names it) as JSON
// lines (times in RFC 3339) to dir/<dataset>.<table>.ndjson, and says where
// and how many rows it kept (0 with Discard).
func (s *Server) DumpFile(project, table, dir string) (path string, rows int, err error) {
	datasetID, tableID, _ := strings.Cut(table, ".")
	path = filepath.Join(dir, table+".ndjson")
	f, err := os.Create(path)
	if err != nil {
		return "", 0, err
	}
	enc := json.NewEncoder(f)
	all := s.Rows(project, datasetID, tableID)
	for _, r := range all {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return "", 0, err
		}
	}
	return path, len(all), f.Close()
}

// RowCount is how many rows were appended to a table (kept or discarded).
func (s *Server) RowCount(project, datasetID, tableID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tableLocked(project, datasetID, tableID); t != nil {
		return t.count
	}
	return 0
}

// land appends rows to the table, or only counts them with Discard.
func (s *Server) land(t *table, rows []map[string]any) {
	t.count += len(rows)
	if !s.opts.Discard {
		t.rows = append(t.rows, rows...)
	}
}

// Partitioning is a table's time partitioning as "TYPE on field" ("" for none).
func (s *Server) Partitioning(project, datasetID, tableID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tableLocked(project, datasetID, tableID); t != nil && t.meta.TimePartitioning != nil {
		return t.meta.TimePartitioning.Type + " on " + t.meta.TimePartitioning.Field
	}
	return ""
}

// Schema is a table's schema as REST shows it (nil when there is no table).
func (s *Server) Schema(project, datasetID, tableID string) *bq.TableSchema {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tableLocked(project, datasetID, tableID); t != nil {
		return t.meta.Schema
	}
	return nil
}

// DeleteTable drops a table as if someone deleted it in the console.
func (s *Server) DeleteTable(project, datasetID, tableID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.datasets[project+"."+datasetID]; d != nil {
		delete(d.tables, tableID)
	}
}

// TableReads counts the tables.get requests answered (found or not).
func (s *Server) TableReads() int { s.mu.Lock(); defer s.mu.Unlock(); return s.tableReads }

// Appends counts AppendRows requests answered with success.
func (s *Server) Appends() int { s.mu.Lock(); defer s.mu.Unlock(); return s.appends }

func (s *Server) tableLocked(project, datasetID, tableID string) *table {
	if d := s.datasets[project+"."+datasetID]; d != nil {
		return d.tables[tableID]
	}
	return nil
}

// setSchemaLocked changes a table's schema; the write API sees it after
// the propagation delay.
func (s *Server) setSchemaLocked(t *table, schema *bq.TableSchema) {
	t.currentWriteSchema()
	t.meta.Schema = schema
	t.pending = append(t.pending, pendingSchema{schema, time.Now().Add(s.opts.Propagation)})
	if s.opts.Propagation <= 0 {
		t.writeSchema, t.pending = schema, nil
	}
	t.version++
	t.meta.Etag = strconv.Itoa(t.version)
	t.meta.LastModifiedTime = uint64(time.Now().UnixMilli())
}

// pendingSchema is a schema change on its way to the write API.
type pendingSchema struct {
	schema *bq.TableSchema
	at     time.Time // when the write API sees it
}

func (t *table) currentWriteSchema() *bq.TableSchema {
	now := time.Now()
	for len(t.pending) > 0 && !now.Before(t.pending[0].at) {
		t.writeSchema, t.pending = t.pending[0].schema, t.pending[1:]
	}
	return t.writeSchema
}

// faults are what tests inject.
type faults struct {
	unavailable int             // fail the next n appends with UNAVAILABLE
	down        map[string]bool // "dataset.table": every append fails with UNAVAILABLE
	slow        time.Duration   // before answering each append
	rowError    func(table string, row map[string]any) string
}

// Unavailable fails the next n AppendRows requests with codes.Unavailable,
// ending their connection, as a BigQuery frontend restart does.
func (s *Server) Unavailable(n int) { s.mu.Lock(); s.faults.unavailable = n; s.mu.Unlock() }

// TableDown makes every append to one table ("dataset.table") fail with
// codes.Unavailable, ending its connection, until called with down false:
// one table in trouble while the others are fine.
func (s *Server) TableDown(table string, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.down == nil {
		s.faults.down = map[string]bool{}
	}
	s.faults.down[table] = down
}

// Slow delays every append answer by d.
func (s *Server) Slow(d time.Duration) { s.mu.Lock(); s.faults.slow = d; s.mu.Unlock() }

// RowErrors makes f decide, for each row appended, an error message ("" for
// none). A request with a row error appends none of its rows, and its
// answer lists each bad row, as BigQuery does.
func (s *Server) RowErrors(f func(table string, row map[string]any) string) {
	s.mu.Lock()
	s.faults.rowError = f
	s.mu.Unlock()
}
