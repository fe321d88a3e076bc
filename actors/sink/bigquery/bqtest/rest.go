package bqtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	bq "google.golang.org/api/bigquery/v2"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /projects/{p}/datasets", s.insertDataset)
	mux.HandleFunc("GET /projects/{p}/datasets/{d}", s.getDataset)
	mux.HandleFunc("POST /projects/{p}/datasets/{d}/tables", s.insertTable)
	mux.HandleFunc("GET /projects/{p}/datasets/{d}/tables/{t}", s.getTable)
	mux.HandleFunc("PATCH /projects/{p}/datasets/{d}/tables/{t}", s.patchTable)
	mux.HandleFunc("PUT /projects/{p}/datasets/{d}/tables/{t}", s.patchTable)
	mux.HandleFunc("DELETE /projects/{p}/datasets/{d}/tables/{t}", s.deleteTable)
	mux.HandleFunc("GET /projects/{p}/datasets/{d}/tables/{t}/data", s.listRows)
	// The client addresses /bigquery/v2/... against the real endpoint and
	// the bare path against an emulator endpoint; take both.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/bigquery/v2")
		mux.ServeHTTP(w, r)
	})
}

// apiError writes BigQuery's error JSON.
func apiError(w http.ResponseWriter, code int, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg, "status": statusName(code),
		"errors": []map[string]string{{"message": msg, "domain": "global", "reason": reason}},
	}})
}

func statusName(code int) string {
	switch code {
	case 400:
		return "INVALID_ARGUMENT"
	case 404:
		return "NOT_FOUND"
	case 409:
		return "ALREADY_EXISTS"
	case 412:
		return "FAILED_PRECONDITION"
	}
	return "INTERNAL"
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		apiError(w, 400, "invalid", "Invalid JSON payload received: %v", err)
		return false
	}
	return true
}

func (s *Server) insertDataset(w http.ResponseWriter, r *http.Request) {
	var d bq.Dataset
	if !decode(w, r, &d) {
		return
	}
	p := r.PathValue("p")
	if d.DatasetReference == nil || d.DatasetReference.DatasetId == "" {
		apiError(w, 400, "invalid", "Dataset reference is missing")
		return
	}
	d.DatasetReference.ProjectId = p
	key := p + "." + d.DatasetReference.DatasetId
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.datasets[key] != nil {
		apiError(w, 409, "duplicate", "Already Exists: Dataset %s:%s", p, d.DatasetReference.DatasetId)
		return
	}
	d.Id, d.Kind, d.Etag = p+":"+d.DatasetReference.DatasetId, "bigquery#dataset", "1"
	d.CreationTime = time.Now().UnixMilli()
	s.datasets[key] = &dataset{meta: &d, tables: map[string]*table{}}
	writeJSON(w, &d)
}

func (s *Server) getDataset(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.datasets[r.PathValue("p")+"."+r.PathValue("d")]
	if d == nil {
		apiError(w, 404, "notFound", "Not found: Dataset %s:%s", r.PathValue("p"), r.PathValue("d"))
		return
	}
	writeJSON(w, d.meta)
}

func (s *Server) insertTable(w http.ResponseWriter, r *http.Request) {
	var t bq.Table
	if !decode(w, r, &t) {
		return
	}
	p, dsID := r.PathValue("p"), r.PathValue("d")
	if t.TableReference == nil || t.TableReference.TableId == "" {
		apiError(w, 400, "invalid", "Table reference is missing")
		return
	}
	if t.Schema != nil {
		if err := checkNewFields(nil, t.Schema.Fields, ""); err != nil {
			apiError(w, 400, "invalid", "%v", err)
			return
		}
		if err := checkLimits(t.Schema.Fields); err != nil {
			apiError(w, 400, "invalid", "%v", err)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.datasets[p+"."+dsID]
	if d == nil {
		apiError(w, 404, "notFound", "Not found: Dataset %s:%s", p, dsID)
		return
	}
	id := t.TableReference.TableId
	if d.tables[id] != nil {
		apiError(w, 409, "duplicate", "Already Exists: Table %s:%s.%s", p, dsID, id)
		return
	}
	t.TableReference.ProjectId, t.TableReference.DatasetId = p, dsID
	t.Id, t.Kind, t.Type = p+":"+dsID+"."+id, "bigquery#table", "TABLE"
	t.CreationTime = time.Now().UnixMilli()
	if t.Schema == nil {
		t.Schema = &bq.TableSchema{}
	}
	tb := &table{meta: &t}
	// A new table's schema is at once what the write API sees.
	tb.writeSchema = t.Schema
	tb.version = 1
	t.Etag = "1"
	d.tables[id] = tb
	writeJSON(w, &t)
}

func (s *Server) getTable(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tableReads++
	t := s.pathTableLocked(w, r)
	if t == nil {
		return
	}
	t.meta.NumRows = uint64(t.count)
	writeJSON(w, t.meta)
}

// patchTable changes a table's schema (the only change sluice makes): with
// If-Match, a stale etag is 412; a column may not change type or go away.
func (s *Server) patchTable(w http.ResponseWriter, r *http.Request) {
	var patch bq.Table
	if !decode(w, r, &patch) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.pathTableLocked(w, r)
	if t == nil {
		return
	}
	if m := r.Header.Get("If-Match"); m != "" && strings.Trim(m, `"`) != t.meta.Etag {
		apiError(w, 412, "conditionNotMet", "Precondition check failed.")
		return
	}
	if patch.Schema != nil {
		if err := checkNewFields(t.meta.Schema.Fields, patch.Schema.Fields, ""); err != nil {
			apiError(w, 400, "invalid", "Provided Schema does not match Table %s. %v", t.meta.Id, err)
			return
		}
		if err := checkLimits(patch.Schema.Fields); err != nil {
			apiError(w, 400, "invalid", "%v", err)
			return
		}
		s.setSchemaLocked(t, patch.Schema)
	}
	if patch.Description != "" {
		t.meta.Description = patch.Description
	}
	writeJSON(w, t.meta)
}

// pathTableLocked is the table a request's path names, or nil after
// answering 404.
func (s *Server) pathTableLocked(w http.ResponseWriter, r *http.Request) *table {
	t := s.tableLocked(r.PathValue("p"), r.PathValue("d"), r.PathValue("t"))
	if t == nil {
		apiError(w, 404, "notFound", "Not found: Table %s:%s.%s", r.PathValue("p"), r.PathValue("d"), r.PathValue("t"))
	}
	return t
}

// checkNewFields allows what BigQuery allows when a schema changes: new
// NULLABLE or REPEATED columns, REQUIRED relaxed to NULLABLE, nothing else.
func checkNewFields(old, updated []*bq.TableFieldSchema, prefix string) error {
	byName := map[string]*bq.TableFieldSchema{}
	for _, f := range updated {
		if f.Name == "" || f.Type == "" {
			return fmt.Errorf("field %s%q: a name and a type are required", prefix, f.Name)
		}
		if byName[strings.ToLower(f.Name)] != nil {
			return fmt.Errorf("field %s%s is given twice", prefix, f.Name)
		}
		byName[strings.ToLower(f.Name)] = f
	}
	for _, o := range old {
		n := byName[strings.ToLower(o.Name)]
		if n == nil {
			return fmt.Errorf("field %s%s is missing in new schema", prefix, o.Name)
		}
		if canonicalType(n.Type) != canonicalType(o.Type) {
			return fmt.Errorf("field %s%s has changed type from %s to %s", prefix, o.Name, o.Type, n.Type)
		}
		if mode(o) != mode(n) && !(mode(o) == "REQUIRED" && mode(n) == "NULLABLE") {
			return fmt.Errorf("field %s%s has changed mode from %s to %s", prefix, o.Name, mode(o), mode(n))
		}
		if err := checkNewFields(o.Fields, n.Fields, prefix+o.Name+"."); err != nil {
			return err
		}
		delete(byName, strings.ToLower(o.Name))
	}
	if old != nil {
		for _, n := range byName {
			if mode(n) == "REQUIRED" {
				return fmt.Errorf("field %s%s: a new column cannot be REQUIRED", prefix, n.Name)
			}
		}
	}
	return nil
}

// What BigQuery refuses in any schema, whatever the change: the reserved
// name prefixes (its own message, word for word), more than maxColumns
// columns (nested ones count) and RECORDs nested deeper than maxDepth. The
// wording of the last two is this stand-in's; the limits are BigQuery's
// documented ones.
const (
	maxColumns = 10000
	maxDepth   = 15
)

var reservedPrefixes = []string{"_PARTITION", "_TABLE_", "_FILE_", "_ROW_TIMESTAMP", "__ROOT__", "_COLIDENTIFIER"}

func checkLimits(fields []*bq.TableFieldSchema) error {
	n, err := checkFields(fields, "", 1)
	if err != nil {
		return err
	}
	if n > maxColumns {
		return fmt.Errorf("Too many columns: the schema has %d columns (nested ones included), the limit is %d", n, maxColumns)
	}
	return nil
}

// checkFields counts the columns of fields (at depth, 1 for the top) and
// refuses a reserved name or a level past maxDepth.
func checkFields(fields []*bq.TableFieldSchema, prefix string, depth int) (int, error) {
	n := 0
	for _, f := range fields {
		for _, p := range reservedPrefixes {
			if len(f.Name) >= len(p) && strings.EqualFold(f.Name[:len(p)], p) {
				return 0, fmt.Errorf("Invalid field name %q. Field names are not allowed to start with the (case-insensitive) prefixes _PARTITION, _TABLE_, _FILE_, _ROW_TIMESTAMP, __ROOT__ and _COLIDENTIFIER", f.Name)
			}
		}
		n++
		if len(f.Fields) == 0 {
			continue
		}
		if depth >= maxDepth+1 {
			return 0, fmt.Errorf("Field %s%s: the schema is nested too deeply; RECORDs may be nested at most %d levels", prefix, f.Name, maxDepth)
		}
		sub, err := checkFields(f.Fields, prefix+f.Name+".", depth+1)
		if err != nil {
			return 0, err
		}
		n += sub
	}
	return n, nil
}

func mode(f *bq.TableFieldSchema) string {
	if f.Mode == "" {
		return "NULLABLE"
	}
	return f.Mode
}

func canonicalType(t string) string {
	switch t {
	case "INT64":
		return "INTEGER"
	case "FLOAT64":
		return "FLOAT"
	case "BOOL":
		return "BOOLEAN"
	case "STRUCT":
		return "RECORD"
	}
	return t
}

func (s *Server) deleteTable(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.datasets[r.PathValue("p")+"."+r.PathValue("d")]
	if d == nil || d.tables[r.PathValue("t")] == nil {
		apiError(w, 404, "notFound", "Not found: Table %s:%s.%s", r.PathValue("p"), r.PathValue("d"), r.PathValue("t"))
		return
	}
	delete(d.tables, r.PathValue("t"))
	w.WriteHeader(http.StatusNoContent)
}

// listRows answers tabledata.list in BigQuery's {"f":[{"v":…}]} shape.
func (s *Server) listRows(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.pathTableLocked(w, r)
	if t == nil {
		return
	}
	start, _ := strconv.Atoi(r.URL.Query().Get("pageToken"))
	max, _ := strconv.Atoi(r.URL.Query().Get("maxResults"))
	if max <= 0 || max > 10000 {
		max = 10000
	}
	end := min(start+max, len(t.rows))
	rows := []any{}
	for _, row := range t.rows[start:end] {
		rows = append(rows, cells(t.meta.Schema.Fields, row))
	}
	out := map[string]any{"kind": "bigquery#tableDataList", "totalRows": strconv.Itoa(len(t.rows)), "rows": rows}
	if end < len(t.rows) {
		out["pageToken"] = strconv.Itoa(end)
	}
	writeJSON(w, out)
}

// cells renders one row (or RECORD) as {"f":[{"v":…}]} in schema order.
func cells(fields []*bq.TableFieldSchema, row map[string]any) map[string]any {
	f := make([]map[string]any, len(fields))
	for i, fs := range fields {
		f[i] = map[string]any{"v": cellValue(fs, row[fs.Name])}
	}
	return map[string]any{"f": f}
}

func cellValue(fs *bq.TableFieldSchema, v any) any {
	if v == nil {
		return nil
	}
	if list, ok := v.([]any); ok && fs.Mode == "REPEATED" {
		out := make([]any, len(list))
		for i, e := range list {
			out[i] = map[string]any{"v": scalarOrRecord(fs, e)}
		}
		return out
	}
	return scalarOrRecord(fs, v)
}

func scalarOrRecord(fs *bq.TableFieldSchema, v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cells(fs.Fields, x)
	case time.Time: // the client asks for formatOptions.useInt64Timestamp
		return strconv.FormatInt(x.UnixMicro(), 10)
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}
