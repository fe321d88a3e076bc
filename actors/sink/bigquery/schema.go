// Package bigquery is the BigQuery sink: rows through the Storage Write
// API, each table's schema inferred from the rows (bqs) and widened as new
// fields appear.
package bigquery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/bigquery"
	"github.com/m-mizutani/bqs"
	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/jsonx"
	"github.com/sluicehq/sluice/queue/batch"
)

// Rules type a row's values. JSON has one number type and no time type,
// and bqs infers every number as FLOAT and every time string as STRING;
// so the rule is: a number is FLOAT unless its path is listed as INTEGER,
// a string is STRING unless its path is listed as TIMESTAMP, and the
// output's timestamp is always a TIMESTAMP column. Nulls, empty arrays and
// empty objects are left out (they carry no type).
type Rules struct {
	IDColumn        string          // default "id"
	TimestampColumn string          // default "timestamp"
	Integer         map[string]bool // dotted paths in data typed INTEGER
	Timestamp       map[string]bool // dotted paths in data typed TIMESTAMP (RFC 3339 or epoch seconds)
	JSON            map[string]bool // dotted paths in data stored whole, as written, in JSON columns

	parsers *fastjson.ParserPool // nil: a parser per row
}

// Row is one output made ready for its table.
type Row struct {
	Values map[string]any // column → float64, int64, string, bool, time.Time, map[string]any or []any
	Schema bigquery.Schema
}

// Prepare normalizes an output's data by the rules, adds the id and
// timestamp columns and infers the row's schema. An error names the field.
func (r Rules) Prepare(o *batch.Output) (*Row, error) {
	data, err := r.decodeData(o.Data)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	obj, ok := data.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("data: a BigQuery row must be an object, not %s", jsonKind(data))
	}
	v, err := r.normalize("", obj)
	if err != nil {
		return nil, err
	}
	values, _ := v.(map[string]any)
	if values == nil {
		values = map[string]any{}
	}
	// BigQuery's column names ignore case: "ID" or Serilog's "Timestamp"
	// is the sink's own column too. Such a row is refused rather than one
	// value silently dropped (a documented rename would be the other way).
	for k := range values {
		for _, col := range []string{r.IDColumn, r.TimestampColumn} {
			switch {
			case k == col:
				return nil, fmt.Errorf("data.%s: the sink's %s column has this name (rename it in the policy or set id_column/timestamp_column)", col, col)
			case strings.EqualFold(k, col):
				return nil, fmt.Errorf("data.%s and the sink's %s column: BigQuery column names ignore case, so they are one column (rename it in the policy or set id_column/timestamp_column)", k, col)
			}
		}
	}
	values[r.IDColumn] = o.ID
	sec, frac := math.Modf(o.Timestamp)
	values[r.TimestampColumn] = time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC()
	schema, err := bqs.Infer(values)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if len(r.JSON) > 0 {
		r.typeJSON("", schema)
	}
	return &Row{Values: values, Schema: schema}, nil
}

// typeJSON makes the columns of JSON paths JSON: bqs inferred STRING from
// the text normalize left there. The write API takes a JSON value as a
// string.
func (r Rules) typeJSON(prefix string, schema bigquery.Schema) {
	for _, f := range schema {
		switch {
		case r.JSON[prefix+f.Name]:
			f.Type = bigquery.JSONFieldType
		case f.Type == bigquery.RecordFieldType:
			r.typeJSON(prefix+f.Name+".", f.Schema)
		}
	}
}

// jsonText is a value written back as compact JSON, numbers as they were
// written, nulls kept, no HTML escaping.
func jsonText(path string, v any) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("data.%s: as JSON: %w", path, err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// decodeData decodes a row's data as encoding/json's Unmarshal with
// UseNumber does (nothing may follow the value), through fastjson:
// encoding/json was a fifth of the sink's CPU. What fastjson would read
// differently (invalid UTF-8, numbers JSON does not allow, any error) goes
// through encoding/json, which also words the error.
func (r Rules) decodeData(b []byte) (any, error) {
	p := &fastjson.Parser{}
	if r.parsers != nil {
		p = r.parsers.Get()
		defer r.parsers.Put(p)
	}
	if plainEscapes(b) {
		if v, err := p.ParseBytes(b); err == nil {
			if x, ok := fromFastJSON(v); ok {
				return x, nil
			}
		}
	}
	var data any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("more after the value at offset %d", dec.InputOffset())
	}
	return data, nil
}

// plainEscapes: no raw control character (compact JSON has none, and
// fastjson takes them inside strings where encoding/json refuses them) and
// every escape one both read alike (not a surrogate, which encoding/json
// pairs or replaces and fastjson keeps as written).
func plainEscapes(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return false
		}
	}
	for i := bytes.IndexByte(b, '\\'); i >= 0; {
		if i+1 >= len(b) {
			return false
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			if i+5 >= len(b) || b[i+2] == 'd' || b[i+2] == 'D' {
				return false
			}
			for _, h := range b[i+2 : i+6] {
				if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
					return false
				}
			}
		default:
			return false
		}
		next := bytes.IndexByte(b[i+2:], '\\')
		if next < 0 {
			break
		}
		i += 2 + next
	}
	return true
}

// fromFastJSON builds what encoding/json builds; false when it would not
// be the same.
func fromFastJSON(v *fastjson.Value) (any, bool) {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		m := make(map[string]any, o.Len())
		ok := true
		o.Visit(func(k []byte, x *fastjson.Value) {
			if !ok {
				return
			}
			var y any
			if y, ok = fromFastJSON(x); ok && utf8.Valid(k) {
				m[string(k)] = y // a repeated key: the last wins, as in encoding/json
			} else {
				ok = false
			}
		})
		return m, ok
	case fastjson.TypeArray:
		a, _ := v.Array()
		out := make([]any, len(a))
		for i, x := range a {
			y, ok := fromFastJSON(x)
			if !ok {
				return nil, false
			}
			out[i] = y
		}
		return out, true
	case fastjson.TypeString:
		b := v.GetStringBytes()
		return string(b), utf8.Valid(b)
	case fastjson.TypeNumber:
		n := v.String()
		return json.Number(n), jsonx.ValidNumber(n)
	case fastjson.TypeTrue:
		return true, true
	case fastjson.TypeFalse:
		return false, true
	}
	return nil, true
}

func (r Rules) normalize(path string, v any) (any, error) {
	if v != nil && r.JSON[path] {
		return jsonText(path, v)
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case json.Number:
		return r.number(path, x)
	case string:
		if r.Timestamp[path] {
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, fmt.Errorf("data.%s: %q is not an RFC 3339 time (the field is typed TIMESTAMP)", path, x)
			}
			return t.UTC(), nil
		}
		return x, nil
	case bool:
		return x, nil
	case map[string]any:
		return r.object(path, x)
	case []any:
		return r.array(path, x)
	}
	return nil, fmt.Errorf("data.%s: unexpected %T", path, v)
}

// number is a JSON number as the field's type wants it: an INTEGER, a
// TIMESTAMP (seconds since the epoch) or a FLOAT.
func (r Rules) number(path string, x json.Number) (any, error) {
	if r.Integer[path] {
		n, err := x.Int64()
		if err != nil {
			return nil, fmt.Errorf("data.%s: %s is not an integer (the field is typed INTEGER)", path, x)
		}
		return n, nil
	}
	f, err := x.Float64()
	if err != nil {
		return nil, fmt.Errorf("data.%s: %v", path, err)
	}
	if r.Timestamp[path] {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC(), nil
	}
	return f, nil
}

// object normalizes a JSON object's values; its keys must be column names
// that differ in more than case. An object left empty is nil.
func (r Rules) object(path string, x map[string]any) (any, error) {
	out := map[string]any{}
	var folded map[string]string // lower case → key, for keys with capitals
	for k, e := range x {
		if !validColumn(k) {
			return nil, fmt.Errorf("data.%s: %q is not a valid BigQuery column name", join(path, k), k)
		}
		if lk := strings.ToLower(k); lk != k {
			other, seen := folded[lk]
			if _, lower := x[lk]; lower {
				other, seen = lk, true
			}
			if seen {
				return nil, fmt.Errorf("data.%s and data.%s: BigQuery column names ignore case, so one row cannot hold both", join(path, other), join(path, k))
			}
			if folded == nil {
				folded = map[string]string{}
			}
			folded[lk] = k
		}
		n, err := r.normalize(join(path, k), e)
		if err != nil {
			return nil, err
		}
		if n != nil {
			out[k] = n
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// array normalizes a JSON array's elements, dropping nulls; BigQuery has
// no arrays of arrays. An array left empty is nil.
func (r Rules) array(path string, x []any) (any, error) {
	var out []any
	for _, e := range x {
		n, err := r.normalize(path, e)
		if err != nil {
			return nil, err
		}
		if _, nested := n.([]any); nested {
			return nil, fmt.Errorf("data.%s: BigQuery has no arrays of arrays", path)
		}
		if n != nil {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// validColumn: letters, digits and underscores, not starting with a digit,
// at most 300 characters (BigQuery's rule for flexible names is wider,
// but the Storage Write API's proto descriptors need these).
func validColumn(k string) bool {
	if k == "" || len(k) > 300 || (k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	}
	return "a number"
}

// Conflict is a row field whose type differs from its table column's.
type Conflict struct {
	Path       string
	TableType  string
	RecordType string
}

func (c *Conflict) Error() string {
	return fmt.Sprintf("field %s: %s in the table, %s in the record", c.Path, c.TableType, c.RecordType)
}

// Widen returns the table schema grown by the row's new fields, keeping the
// table's columns in their order and adding new ones after them, by name;
// grown is false when nothing was added. A type clash is a *Conflict.
func Widen(table, row bigquery.Schema) (out bigquery.Schema, grown bool, err error) {
	return widen("", table, row)
}

func widen(prefix string, table, row bigquery.Schema) (bigquery.Schema, bool, error) {
	out := make(bigquery.Schema, 0, len(table)+len(row))
	grown := false
	byName := map[string]*bigquery.FieldSchema{}
	for _, f := range row {
		byName[strings.ToLower(f.Name)] = f
	}
	for _, tf := range table {
		rf := byName[strings.ToLower(tf.Name)]
		delete(byName, strings.ToLower(tf.Name))
		if rf == nil {
			out = append(out, tf)
			continue
		}
		if rf.Type != tf.Type || rf.Repeated != tf.Repeated {
			return nil, false, &Conflict{Path: prefix + tf.Name, TableType: typeName(tf), RecordType: typeName(rf)}
		}
		if tf.Type != bigquery.RecordFieldType {
			out = append(out, tf)
			continue
		}
		sub, g, err := widen(prefix+tf.Name+".", tf.Schema, rf.Schema)
		if err != nil {
			return nil, false, err
		}
		if g {
			c := *tf
			c.Schema, grown = sub, true
			out = append(out, &c)
		} else {
			out = append(out, tf)
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := *byName[n]
		f.Required = false // a new column is NULLABLE
		out = append(out, &f)
		grown = true
	}
	return out, grown, nil
}

func typeName(f *bigquery.FieldSchema) string {
	if f.Repeated {
		return "REPEATED " + string(f.Type)
	}
	return string(f.Type)
}

// Fits says whether every field of row is a column of table already.
// It runs for every row, so it looks fields up in place instead of building
// the widened schema: the same answer as Widen giving no error and no
// growth (TestFitsIsWidenWithoutGrowth).
func Fits(table, row bigquery.Schema) bool {
	for _, rf := range row {
		tf := fieldNamed(table, rf.Name)
		if tf == nil || tf.Type != rf.Type || tf.Repeated != rf.Repeated {
			return false
		}
		if tf.Type == bigquery.RecordFieldType && !Fits(tf.Schema, rf.Schema) {
			return false
		}
	}
	return true
}

// fieldNamed finds a column by name, as BigQuery does: ignoring case.
func fieldNamed(s bigquery.Schema, name string) *bigquery.FieldSchema {
	for _, f := range s {
		if strings.EqualFold(f.Name, name) {
			return f
		}
	}
	return nil
}
