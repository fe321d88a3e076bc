package bigquery

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"github.com/m-mizutani/bqs"

	"github.com/sluicehq/sluice/queue/batch"
)

var rules = Rules{IDColumn: "id", TimestampColumn: "timestamp", Integer: map[string]bool{"count": true}, Timestamp: map[string]bool{"at": true, "meta.seen": true}}

func names(s bigquery.Schema) string {
	var n []string
	for _, f := range s {
		n = append(n, f.Name+":"+string(f.Type))
	}
	return strings.Join(n, ",")
}

func TestPrepareTypesByTheRules(t *testing.T) {
	o := &batch.Output{ID: "r1", Timestamp: 1732480000.123, Data: []byte(`{"actor":"octocat","n":3,"count":7,"at":"2024-11-24T20:26:40Z",
		"ok":true,"gone":null,"empty":{},"none":[],"meta":{"seen":1732480000,"tags":["a","b"]}}`)}
	r, err := rules.Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	v := r.Values
	if v["n"] != 3.0 || v["count"] != int64(7) || v["ok"] != true || v["id"] != "r1" {
		t.Fatalf("values: %v", v)
	}
	if at := v["at"].(time.Time); !at.Equal(time.Date(2024, 11, 24, 20, 26, 40, 0, time.UTC)) {
		t.Fatalf("at: %v", at)
	}
	if ts := v["timestamp"].(time.Time); ts.UnixMicro() != 1732480000123000 {
		t.Fatalf("timestamp: %v", ts)
	}
	for _, k := range []string{"gone", "empty", "none"} {
		if _, ok := v[k]; ok {
			t.Fatalf("%s kept: %v", k, v[k])
		}
	}
	want := map[string]bigquery.FieldType{"n": bigquery.FloatFieldType, "count": bigquery.IntegerFieldType, "at": bigquery.TimestampFieldType,
		"timestamp": bigquery.TimestampFieldType, "id": bigquery.StringFieldType, "meta": bigquery.RecordFieldType, "ok": bigquery.BooleanFieldType}
	for _, f := range r.Schema {
		if w, ok := want[f.Name]; ok && f.Type != w {
			t.Fatalf("column %s inferred %s, want %s", f.Name, f.Type, w)
		}
		if f.Name == "meta" {
			if got := names(f.Schema); !strings.Contains(got, "seen:TIMESTAMP") || !strings.Contains(got, "tags:STRING") {
				t.Fatalf("meta: %s", got)
			}
		}
	}
}

func TestPrepareNamesTheBadField(t *testing.T) {
	for data, want := range map[string]string{
		`{"count":1.5}`:             "data.count: 1.5 is not an integer",
		`{"at":"yesterday"}`:        `data.at: "yesterday" is not an RFC 3339 time`,
		`{"a b":1}`:                 `"a b" is not a valid BigQuery column name`,
		`{"x":[[1]]}`:               "no arrays of arrays",
		`["not","an","object"]`:     "must be an object, not an array",
		`{"id":"mine"}`:             "data.id: the sink's id column",
		`{"x":[1,"mixed"]}`:         "data",
		`{"meta":{"seen":"never"}}`: "data.meta.seen",
	} {
		_, err := rules.Prepare(&batch.Output{ID: "r", Timestamp: 1, Data: []byte(data)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", data, err, want)
		}
	}
}

func TestWidenKeepsOrderAndFindsConflicts(t *testing.T) {
	table := bigquery.Schema{{Name: "z", Type: bigquery.StringFieldType}, {Name: "a", Type: bigquery.FloatFieldType},
		{Name: "rec", Type: bigquery.RecordFieldType, Schema: bigquery.Schema{{Name: "x", Type: bigquery.StringFieldType}}}}
	row := bigquery.Schema{{Name: "new2", Type: bigquery.StringFieldType}, {Name: "a", Type: bigquery.FloatFieldType}, {Name: "new1", Type: bigquery.BooleanFieldType, Required: true},
		{Name: "rec", Type: bigquery.RecordFieldType, Schema: bigquery.Schema{{Name: "y", Type: bigquery.IntegerFieldType}}}}
	out, grown, err := Widen(table, row)
	if err != nil || !grown {
		t.Fatalf("grown %v, err %v", grown, err)
	}
	if got := names(out); got != "z:STRING,a:FLOAT,rec:RECORD,new1:BOOLEAN,new2:STRING" {
		t.Fatalf("widened: %s", got)
	}
	if out[3].Required {
		t.Fatal("a new column came in REQUIRED")
	}
	if got := names(out[2].Schema); got != "x:STRING,y:INTEGER" {
		t.Fatalf("record widened: %s", got)
	}
	if _, grown, err := Widen(out, row); err != nil || grown {
		t.Fatalf("widening again: grown %v, err %v", grown, err)
	}
	if !Fits(out, row) || Fits(table, row) {
		t.Fatal("Fits is wrong")
	}
	_, _, err = Widen(table, bigquery.Schema{{Name: "rec", Type: bigquery.RecordFieldType, Schema: bigquery.Schema{{Name: "x", Type: bigquery.IntegerFieldType}}}})
	var c *Conflict
	if !errors.As(err, &c) || c.Path != "rec.x" || c.TableType != "STRING" || c.RecordType != "INTEGER" {
		t.Fatalf("conflict: %v", err)
	}
	if err.Error() != "field rec.x: STRING in the table, INTEGER in the record" {
		t.Fatalf("conflict text: %v", err)
	}
}

// decodeData gives what encoding/json with UseNumber gives, for any input;
// like json.Unmarshal, it refuses anything after the value (a data-last
// record whose data was not last after all).
func FuzzDecodeData(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[1.5,"x",null,true],"c":{"d":"\u00e9"}}`, `{"a":1,"a":2}`, `{"s":"bad\xffutf8"}`, `{"n":01}`, `{"n":nan}`, `{"k\ud800":1}`, `[1]`, `{"a":1} x`} {
		f.Add([]byte(s))
	}
	r := Rules{}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gotErr := r.decodeData(b)
		var want any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		wantErr := dec.Decode(&want)
		if _, err := dec.Token(); wantErr == nil && err != io.EOF {
			wantErr = errors.New("more after the value")
		}
		if (gotErr == nil) != (wantErr == nil) || (gotErr == nil && !reflect.DeepEqual(got, want)) {
			t.Fatalf("%q: got %#v, %v; encoding/json %#v, %v", b, got, gotErr, want, wantErr)
		}
	})
}

// Fits answers as Widen does (no error, nothing grown), over every pair of
// schemas inferred from random rows, tables widened from several rows.
func TestFitsIsWidenWithoutGrowth(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	var value func(depth int) any
	value = func(depth int) any {
		switch r.IntN(5) {
		case 0:
			return "s"
		case 1:
			return 1.5
		case 2:
			return true
		case 3:
			if depth < 2 {
				m := map[string]any{}
				for range 1 + r.IntN(3) {
					m[[]string{"a", "B", "c"}[r.IntN(3)]] = value(depth + 1)
				}
				return m
			}
		}
		return []any{"x"}
	}
	var schemas []bigquery.Schema
	for range 60 {
		row := map[string]any{}
		for range 1 + r.IntN(4) {
			row[[]string{"x", "Y", "z", "w"}[r.IntN(4)]] = value(0)
		}
		s, err := bqs.Infer(row)
		if err != nil {
			t.Fatal(err)
		}
		schemas = append(schemas, s)
	}
	var tables []bigquery.Schema
	for i := 0; i+2 < len(schemas); i += 3 {
		table := schemas[i]
		for _, s := range schemas[i+1 : i+3] {
			if w, _, err := Widen(table, s); err == nil {
				table = w
			}
		}
		tables = append(tables, table)
	}
	fits := 0
	for _, table := range append(tables, schemas...) {
		for _, row := range schemas {
			_, grown, err := Widen(table, row)
			want := err == nil && !grown
			if got := Fits(table, row); got != want {
				t.Fatalf("Fits = %v, Widen says %v (grown %v, err %v)\ntable %v\nrow %v", got, want, grown, err, table, row)
			}
			if want {
				fits++
			}
		}
	}
	if fits < 20 {
		t.Fatalf("only %d pairs fit: the test does not exercise Fits", fits)
	}
}

func TestPrepareRefusesKeysThatDifferOnlyInCase(t *testing.T) {
	o := batch.Output{ID: "a", Timestamp: 1, Data: []byte(`{"meta":{"Host":"a","host":"b"}}`)}
	_, err := rules.Prepare(&o)
	if err == nil || !strings.Contains(err.Error(), "data.meta.host and data.meta.Host") {
		t.Fatalf("err %v", err)
	}
	o.Data = []byte(`{"User":"a","USER":"b"}`)
	if _, err := rules.Prepare(&o); err == nil || !strings.Contains(err.Error(), "ignore case") {
		t.Fatalf("err %v", err)
	}
	o.Data = []byte(`{"User":"a","Host":"b","n":{"User":1}}`)
	if _, err := rules.Prepare(&o); err != nil {
		t.Fatalf("distinct names refused: %v", err)
	}
}

// Serilog writes "Timestamp"; others write "ID". BigQuery's names ignore
// case, so such a key is the sink's own column: the row is refused with
// both names (before, a string ID overwrote the id column or was dropped,
// depending on map order, and a Timestamp was held forever).
func TestPrepareRefusesDataKeysThatAreTheSinksColumnsInAnotherCase(t *testing.T) {
	for data, want := range map[string]string{
		`{"Timestamp":"2026-12-07T10:00:00Z","m":"x"}`: "data.Timestamp and the sink's timestamp column",
		`{"ID":"abc"}`:   "data.ID and the sink's id column",
		`{"iD":{"x":1}}`: "data.iD and the sink's id column",
	} {
		_, err := rules.Prepare(&batch.Output{ID: "r", Timestamp: 1, Data: []byte(data)})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "ignore case") {
			t.Errorf("%s: %v, want %q", data, err, want)
		}
	}
}
