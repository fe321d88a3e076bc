package bigquery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"github.com/googleapis/gax-go/v2/apierror"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pendingRow is a row on its way to its table; done reports how it ended
// ("" when BigQuery accepted it, else why it goes to the DLQ).
type pendingRow struct {
	row       *Row
	partition string
	done      func(deadReason string)
	// ended says the row was ended elsewhere (set aside while its table
	// was in trouble, Sink.evict): it is not written.
	ended     func() bool
	heldSince time.Time // when it began to wait for a widened schema
}

// live drops the rows ended elsewhere.
func live[R interface{ isEnded() bool }](rows []R) []R {
	out := rows[:0:0]
	for _, r := range rows {
		if !r.isEnded() {
			out = append(out, r)
		}
	}
	return out
}

func (r pendingRow) isEnded() bool { return r.ended != nil && r.ended() }

type tableKey struct{ dataset, table string }

func (k tableKey) String() string { return k.dataset + "." + k.table }

// tableWriter owns one table's _default stream, in one goroutine. Rows
// that fit the stream's schema are appended at once; rows with new fields
// widen the table and wait (un-acked) until the write API accepts the new
// schema — probed with capped backoff, and at once when an append result
// says the schema was updated — while the others keep flowing.
type tableWriter struct {
	s   *Sink
	key tableKey
	log *slog.Logger

	mu     sync.Mutex
	queue  []pendingRow
	notify chan struct{}

	main    *stream  // rows that fit main.t.schema go here
	target  *rowType // the widened schema held rows need
	probe   *stream  // opened on target while waiting for it to propagate
	held    []pendingRow
	probeAt time.Time        // when to probe next
	probeBo *backoff.Backoff // between probes of a widened schema that has not arrived
	// reopenBo spaces the table's stream being dropped and opened again
	// (the table was deleted or re-created narrower, and the widened
	// schema takes a while to reach the write API); reset by an append
	// that succeeds on the table's stream.
	reopenBo *backoff.Backoff
}

type stream struct {
	t  *rowType
	ms *managedwriter.ManagedStream
}

func (s *stream) close() {
	if s != nil && s.ms != nil {
		_ = s.ms.Close()
	}
}

func newTableWriter(s *Sink, key tableKey) *tableWriter {
	return &tableWriter{s: s, key: key, log: s.log.With("table", key.String()), notify: make(chan struct{}, 1),
		probeBo: backoff.New(250*time.Millisecond, 5*time.Second), reopenBo: backoff.New(200*time.Millisecond, s.cfg.MaxBackoff.D())}
}

// enqueue hands rows to the writer; it never blocks, so a table that is
// failing does not hold up the others.
func (w *tableWriter) enqueue(rows []pendingRow) {
	w.mu.Lock()
	w.queue = append(w.queue, rows...)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *tableWriter) run(ctx context.Context) {
	defer func() { w.main.close(); w.probe.close() }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if len(w.held) > 0 {
			// A deadline, not a delay: rows arriving more often than the
			// probe's backoff must not keep putting it off.
			timer.Reset(max(0, time.Until(w.probeAt)))
		}
		select {
		case <-ctx.Done():
			return
		case <-w.notify:
		case <-timer.C:
			if len(w.held) > 0 {
				w.tryProbe(ctx)
			}
			continue
		}
		w.mu.Lock()
		rows := w.queue
		w.queue = nil
		w.mu.Unlock()
		w.take(ctx, rows)
	}
}

// take sorts rows into those the stream can write now and those that need
// the table widened first, and writes the first. When the table's stream
// had to be dropped (the table was deleted or lost columns), the rows it
// did not write are sorted again against the table as it is now.
func (w *tableWriter) take(ctx context.Context, rows []pendingRow) {
	for rows = live(rows); len(rows) > 0 && ctx.Err() == nil; rows = live(rows) {
		var ready []pendingRow
		for _, r := range rows {
			if w.main == nil {
				if err := w.openMain(ctx, r); err != nil {
					if ctx.Err() != nil {
						return
					}
					w.refuse(r, err)
					continue
				}
			}
			if Fits(w.main.t.schema, r.row.Schema) {
				ready = append(ready, r)
				continue
			}
			if err := w.widenFor(ctx, r); err != nil {
				if ctx.Err() != nil {
					return
				}
				w.refuse(r, err)
				continue
			}
			if !Fits(w.target.schema, r.row.Schema) {
				// Never true while Widen and Fits agree; were it, the row
				// would be held and probed for ever.
				w.s.m.dead.WithLabelValues("refused").Inc()
				r.done(fmt.Sprintf("table %s: the widened table still cannot hold the row (its names or types do not fit the table's)", w.key))
				continue
			}
			if len(w.held) == 0 {
				w.probeBo.Reset()
				w.probeAt = time.Now().Add(w.probeBo.Next())
			}
			r.heldSince = time.Now()
			w.held = append(w.held, r)
		}
		w.s.m.waiting.WithLabelValues(w.key.String()).Set(float64(len(w.held)))
		if len(ready) == 0 {
			return
		}
		left, err := w.appendAll(ctx, w.main, ready)
		if !errors.Is(err, errReopen) {
			return
		}
		rows = left
		wait := w.reopenBo.Next()
		w.log.Warn("the table's stream was dropped; opening it again", "rows", len(rows), "err", err, "next_in", wait)
		if !actors.Sleep(ctx, wait) {
			return
		}
	}
}

// refuse ends a row that can never be written: a type clash with the
// table, or an error that names it. Anything else is retried, not refused.
func (w *tableWriter) refuse(r pendingRow, err error) {
	var c *Conflict
	if errors.As(err, &c) {
		w.s.m.dead.WithLabelValues("type_conflict").Inc()
		r.done(fmt.Sprintf("table %s: %v", w.key, c))
		return
	}
	w.s.m.dead.WithLabelValues("refused").Inc()
	r.done(fmt.Sprintf("table %s: %v", w.key, err))
}

// openMain makes sure the table exists with the row's columns and opens
// the stream on the table's schema. It retries until it can, so the only
// errors are a type clash of r with the table and ctx ending.
func (w *tableWriter) openMain(ctx context.Context, r pendingRow) error {
	bo := w.retryBackoff()
	for {
		schema, err := w.ensure(ctx, r)
		if err != nil {
			return err
		}
		if w.main, err = w.open(ctx, schema); err == nil {
			return nil
		}
		w.s.setState(w.key, err.Error())
		wait := bo.Next()
		w.log.Warn("cannot open the table's write stream; retrying", "err", err, "next_in", wait)
		if !actors.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// ensure widens the table for r, retrying what is not r's fault. A type
// clash and BigQuery's permanent answers (a 400: a reserved column name,
// too many columns, too deep) are r's: they return at once, for r to go to
// the DLQ, and the table goes on with the next row.
func (w *tableWriter) ensure(ctx context.Context, r pendingRow) (bigquery.Schema, error) {
	bo := w.retryBackoff()
	for {
		schema, err := w.s.tables.ensure(ctx, w.key.dataset, w.key.table, r.row.Schema, r.partition)
		var c *Conflict
		if err == nil || errors.As(err, &c) || permanent(err) || ctx.Err() != nil {
			if err == nil {
				w.s.setState(w.key, "")
			}
			return schema, err
		}
		w.s.setState(w.key, err.Error())
		wait := bo.Next()
		w.log.Warn("cannot prepare the table; retrying", "err", err, "next_in", wait)
		if !actors.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

func (w *tableWriter) widenFor(ctx context.Context, r pendingRow) error {
	if w.target != nil && Fits(w.target.schema, r.row.Schema) {
		return nil
	}
	schema, err := w.ensure(ctx, r)
	if err != nil {
		return err
	}
	t, err := newRowType(schema)
	if err != nil {
		return err
	}
	// The probe keeps the schema it was opened on: the rows that fit it
	// land as soon as that widening has propagated, even while newer
	// ones keep coming (each widening restarts BigQuery's propagation).
	w.target = t
	return nil
}

func (w *tableWriter) open(ctx context.Context, schema bigquery.Schema) (*stream, error) {
	t, err := newRowType(schema)
	if err != nil {
		return nil, err
	}
	ms, err := w.s.mw.NewManagedStream(ctx,
		managedwriter.WithDestinationTable(managedwriter.TableParentFromParts(w.s.cfg.Project, w.key.dataset, w.key.table)),
		managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(t.dp),
		managedwriter.EnableWriteRetries(true))
	if err != nil {
		return nil, fmt.Errorf("open the write stream of %s: %w", w.key, err)
	}
	return &stream{t: t, ms: ms}, nil
}

// tryProbe appends the held rows that fit the probe stream's schema: when
// the write API takes them, that stream becomes the table's stream, and
// the rows that need a later widening get a new probe on it. A row held
// longer than max_schema_wait goes to the DLQ instead.
func (w *tableWriter) tryProbe(ctx context.Context) {
	defer func() { w.s.m.waiting.WithLabelValues(w.key.String()).Set(float64(len(w.held))) }()
	w.expireHeld()
	if len(w.held) == 0 {
		w.probe.close()
		w.probe = nil
		return
	}
	var fit, rest []pendingRow
	for attempt := 0; attempt < 2; attempt++ {
		if w.probe == nil {
			var err error
			if w.probe, err = w.open(ctx, w.target.schema); err != nil {
				w.log.Warn("opening a stream on the widened schema failed", "err", err)
				w.backOffProbe()
				return
			}
		}
		fit, rest = nil, nil
		for _, r := range w.held {
			if Fits(w.probe.t.schema, r.row.Schema) {
				fit = append(fit, r)
			} else {
				rest = append(rest, r)
			}
		}
		if len(fit) > 0 {
			break
		}
		// Every row waiting needs more than the probe's schema (its own
		// rows landed through the table's stream): probe the newest.
		w.probe.close()
		w.probe = nil
	}
	if len(fit) == 0 {
		w.backOffProbe()
		return
	}
	if left, err := w.appendAll(ctx, w.probe, fit); err != nil {
		w.held = append(left, rest...) // rows it wrote before the error are done
		w.backOffProbe()
		return
	}
	w.log.Info("the widened schema reached the write API", "columns", len(w.probe.t.schema), "rows", len(fit), "still_waiting", len(rest))
	w.main.close()
	w.main, w.probe, w.held = w.probe, nil, rest
	w.probeBo.Reset()
	w.probeAt = time.Now()
}

// expireHeld sends the rows that waited longer than max_schema_wait for
// their widened schema to the DLQ, naming the fields that did not arrive.
func (w *tableWriter) expireHeld() {
	limit := w.s.cfg.MaxSchemaWait.D()
	kept := w.held[:0]
	for _, r := range w.held {
		if time.Since(r.heldSince) < limit {
			kept = append(kept, r)
			continue
		}
		var missing []string
		for _, f := range r.row.Schema {
			if w.main == nil || !Fits(w.main.t.schema, bigquery.Schema{f}) {
				missing = append(missing, f.Name)
			}
		}
		w.s.m.dead.WithLabelValues("schema_wait").Inc()
		r.done(fmt.Sprintf("table %s: the table was widened for %s, but the write API did not take the new schema within max_schema_wait (%s)",
			w.key, strings.Join(missing, ", "), limit))
	}
	clear(w.held[len(kept):])
	w.held = kept
}

func (w *tableWriter) backOffProbe() { w.probeAt = time.Now().Add(w.probeBo.Next()) }

// retryBackoff is a fresh retry backoff of the table's: 200 ms up to max_backoff.
func (w *tableWriter) retryBackoff() *backoff.Backoff {
	return backoff.New(200*time.Millisecond, w.s.cfg.MaxBackoff.D())
}

var (
	errPropagating = errors.New("the widened schema has not reached the write API yet")
	errReopen      = errors.New("the table's stream was dropped: sort the rows again")
	errTooLarge    = errors.New("BigQuery refused the request as too large")
)

// isStatus says whether err is a gRPC status (an answer of BigQuery's or
// of the connection to it) rather than an error of the client itself.
func isStatus(err error) bool {
	_, ok := status.FromError(err)
	return ok
}

// tooLarge is BigQuery's answer to a request over 10 MB: INVALID_ARGUMENT
// "AppendRows request too large: N limit 10485760".
func tooLarge(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "request too large")
}

// maxRow is the largest encoded row sent: an AppendRows request may be at
// most 10 MB (10,485,760 bytes), and the first request on a connection
// also carries the writer schema and the stream's name.
const maxRow = 9 << 20

// encoded is a row with its bytes in the stream's message type.
type encoded struct {
	pendingRow
	b []byte
}

// appendAll appends rows, batch_rows and batch_bytes of encoded (proto)
// rows a request, until each is accepted or refused; when it stops early it
// returns the rows it has not ended, and why. A row that does not encode,
// or is larger than any request may be, goes to the DLQ. A request that
// BigQuery refused for some rows is sent again without them; one it
// refused as too large is split in two. On the probe stream, fields
// BigQuery does not know yet are errPropagating; on the table's own stream
// they, or a deleted table, drop the stream (errReopen: the caller widens
// or re-creates the table and sorts the rows again). Other errors are
// retried with backoff for as long as it takes (the rows stay un-acked in
// OUT).
func (w *tableWriter) appendAll(ctx context.Context, st *stream, rows []pendingRow) ([]pendingRow, error) {
	enc := make([]encoded, 0, len(rows))
	for _, r := range rows {
		b, err := st.t.encode(r.row.Values)
		switch {
		case err != nil:
			w.refuse(r, err)
		case len(b) > maxRow:
			w.s.m.dead.WithLabelValues("bad_row").Inc()
			r.done(fmt.Sprintf("table %s: the row is too large: %d bytes encoded, more than an AppendRows request may carry (10 MB with the writer schema; %d for the row)", w.key, len(b), maxRow))
		default:
			enc = append(enc, encoded{r, b})
		}
	}
	unended := func(e []encoded) []pendingRow {
		out := make([]pendingRow, len(e))
		for i := range e {
			out[i] = e[i].pendingRow
		}
		return out
	}
	for len(enc) > 0 {
		n, size := 0, 0
		for n < len(enc) && n < w.s.cfg.BatchRows && (n == 0 || size+len(enc[n].b)+rowOverhead <= int(w.s.cfg.BatchBytes)) {
			size += len(enc[n].b) + rowOverhead
			n++
		}
		left, err := w.appendChunk(ctx, st, enc[:n])
		for errors.Is(err, errTooLarge) && n > 1 {
			// BigQuery counts what we cannot (the request's framing): send
			// the first half alone, then go on.
			n = (n + 1) / 2
			left, err = w.appendChunk(ctx, st, enc[:n])
		}
		if err != nil {
			return append(unended(left), unended(enc[n:])...), err
		}
		enc = enc[n:]
	}
	return nil, nil
}

// rowOverhead is what a row adds to a request besides its bytes: the
// serialized_rows tag and a length of up to 3 bytes for rows under 2 MB.
const rowOverhead = 5

// appendChunk appends one request's worth of rows (see appendAll) and
// returns, with the error that stopped it, the rows it has not ended.
func (w *tableWriter) appendChunk(ctx context.Context, st *stream, rows []encoded) ([]encoded, error) {
	bo := w.retryBackoff()
	for rows = live(rows); len(rows) > 0; rows = live(rows) {
		enc := make([][]byte, len(rows))
		var bytes int
		for i, r := range rows {
			enc[i] = r.b
			bytes += len(r.b)
		}
		start := time.Now()
		res, err := st.ms.AppendRows(ctx, enc)
		if err == nil {
			_, err = res.GetResult(ctx)
		}
		w.s.m.appendSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			w.appended(ctx, st, rows, res, bytes)
			return nil, nil
		}
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
		if again, refused := w.rowErrors(ctx, rows, res); refused {
			rows = again
			continue
		}
		if left, stop, err := w.failed(ctx, st, rows, err, bo); stop {
			return left, err
		}
	}
	return nil, nil
}

// appended ends rows BigQuery accepted, and probes the held rows at once
// when the answer says the table's schema was updated.
func (w *tableWriter) appended(ctx context.Context, st *stream, rows []encoded, res *managedwriter.AppendResult, bytes int) {
	if st == w.main {
		w.reopenBo.Reset()
	}
	w.s.setState(w.key, "")
	w.s.m.rows.WithLabelValues(w.key.String()).Add(float64(len(rows)))
	w.s.m.bytes.WithLabelValues(w.key.String()).Add(float64(bytes))
	w.s.m.Events.Add(float64(len(rows)))
	w.s.m.Bytes.Add(float64(bytes))
	for _, r := range rows {
		r.done("")
	}
	if us, _ := res.UpdatedSchema(ctx); us != nil && len(w.held) > 0 {
		w.probeAt = time.Now() // a new schema has arrived: try the held rows now
		w.probeBo.Reset()
	}
}

// rowErrors dead-letters the rows an append's answer names as refused
// and returns the others, to be sent again; refused is false when the
// answer names no row.
func (w *tableWriter) rowErrors(ctx context.Context, rows []encoded, res *managedwriter.AppendResult) (again []encoded, refused bool) {
	if res == nil {
		return nil, false
	}
	full, _ := res.FullResponse(ctx)
	if full == nil || len(full.GetRowErrors()) == 0 {
		return nil, false
	}
	bad := map[int64]string{}
	for _, re := range full.GetRowErrors() {
		bad[re.GetIndex()] = re.GetMessage()
	}
	for i, r := range rows {
		if msg, ok := bad[int64(i)]; ok {
			w.s.m.dead.WithLabelValues("row_error").Inc()
			r.done(fmt.Sprintf("table %s: BigQuery refused the row: %s", w.key, msg))
		} else {
			again = append(again, r)
		}
	}
	return again, true
}

// failed handles an append that failed for every row: stop says to
// return left and the error to appendAll; otherwise it waited (bo) and
// the rows go again.
func (w *tableWriter) failed(ctx context.Context, st *stream, rows []encoded, err error, bo *backoff.Backoff) (left []encoded, stop bool, _ error) {
	if tooLarge(err) {
		if len(rows) > 1 {
			return rows, true, errTooLarge
		}
		w.s.m.dead.WithLabelValues("bad_row").Inc()
		rows[0].done(fmt.Sprintf("table %s: the row is too large for an AppendRows request: %v", w.key, err))
		return nil, true, nil
	}
	code := storageCode(err)
	gone := code == storagepb.StorageError_TABLE_NOT_FOUND || status.Code(err) == codes.NotFound
	switch {
	case st == w.main && (gone || code == storagepb.StorageError_SCHEMA_MISMATCH_EXTRA_FIELDS):
		// Deleted, or re-created with fewer columns: drop the stream;
		// sorting the rows again creates or widens the table.
		w.log.Warn("the table is gone or lost columns; preparing it again", "err", err)
		w.main.close()
		w.main = nil
		return rows, true, errReopen
	case code == storagepb.StorageError_SCHEMA_MISMATCH_EXTRA_FIELDS:
		return rows, true, errPropagating
	case gone:
		// The probe's table is gone: create it on the widened schema
		// and probe again on a new stream.
		w.log.Warn("the table is gone; creating it again", "err", err)
		if _, err := w.ensure(ctx, pendingRow{row: &Row{Schema: st.t.schema}}); err != nil {
			return rows, true, err
		}
		w.probe.close()
		w.probe = nil
		return rows, true, errPropagating
	case !isStatus(err):
		// Not BigQuery's answer but the client's (context canceled,
		// EOF): its connection is gone for good, and every append on
		// this stream would fail at once. Open a new one.
		w.log.Warn("the write stream failed; opening a new one", "err", err)
		st.close()
		if st == w.main {
			w.main = nil
			return rows, true, errReopen
		}
		w.probe = nil
		return rows, true, err
	}
	w.s.setState(w.key, err.Error())
	w.s.m.retries.WithLabelValues(w.key.String()).Inc()
	w.s.m.Retries.WithLabelValues("network").Inc()
	wait := bo.Next()
	w.log.Warn("append failed; retrying", "rows", len(rows), "err", err, "next_in", wait)
	if !actors.Sleep(ctx, wait) {
		return rows, true, ctx.Err()
	}
	return nil, false, nil
}

// storageCode reads BigQuery's StorageError detail of an append error.
func storageCode(err error) storagepb.StorageError_StorageErrorCode {
	ae, ok := apierror.FromError(err)
	if !ok {
		return storagepb.StorageError_STORAGE_ERROR_CODE_UNSPECIFIED
	}
	for _, d := range ae.Details().Unknown {
		if se, ok := d.(*storagepb.StorageError); ok {
			return se.GetCode()
		}
	}
	return storagepb.StorageError_STORAGE_ERROR_CODE_UNSPECIFIED
}
