package bigquery

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/sluicehq/sluice/queue/batch"
)

// Rows of every column type, nested records and lists, through both
// encoders: the same message, and the same error for a row that does not
// fit.
func TestEncodeMatchesDynamicpb(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 4))
	rules := Rules{IDColumn: "id", TimestampColumn: "timestamp", Integer: map[string]bool{"n": true, "rec.n": true}, Timestamp: map[string]bool{"at": true}}
	var rows []*Row
	for i := range 300 {
		var parts []string
		add := func(k, v string) {
			if r.IntN(4) > 0 {
				parts = append(parts, fmt.Sprintf("%q:%s", k, v))
			}
		}
		add("s", fmt.Sprintf("%q", strings.Repeat("é", r.IntN(5))))
		add("n", fmt.Sprint(r.IntN(1000)-500))
		add("f", fmt.Sprint(r.Float64()*1e6))
		add("b", []string{"true", "false"}[r.IntN(2)])
		add("at", fmt.Sprintf("%q", "2024-11-24T00:00:00.123456Z"))
		add("tags", `["a","b",""]`)
		add("nums", `[1.5,2,-3]`)
		add("rec", fmt.Sprintf(`{"n":%d,"name":"x","deep":{"ok":true}}`, i))
		add("recs", `[{"name":"a"},{"name":"b","v":1.25}]`)
		o := batch.Output{ID: fmt.Sprint("id-", i), Timestamp: 1732480000.5 + float64(i), Data: []byte("{" + strings.Join(parts, ",") + "}")}
		row, err := rules.Prepare(&o)
		if err != nil {
			t.Fatalf("%s: %v", o.Data, err)
		}
		rows = append(rows, row)
	}
	var table = rows[0].Schema
	for _, row := range rows[1:] {
		w, _, err := Widen(table, row.Schema)
		if err != nil {
			t.Fatal(err)
		}
		table = w
	}
	rt, err := newRowType(table)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		want, err := rt.dynamicMessage(row.Values)
		if err != nil {
			t.Fatalf("reference: %v", err)
		}
		b, err := rt.encode(row.Values)
		if err != nil {
			t.Fatal(err)
		}
		got := dynamicpb.NewMessage(rt.md)
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("row %v:\nprotowire %v\ndynamicpb %v", row.Values, got, want)
		}
	}
	// A value of the wrong type: both say the same.
	bad := map[string]any{"n": "seven"}
	_, wantErr := rt.dynamicMessage(bad)
	_, gotErr := rt.encode(bad)
	if wantErr == nil || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("protowire error %v, dynamicpb error %v", gotErr, wantErr)
	}
}

// dynamicMessage is how rows were encoded before: the reference.
func (t *rowType) dynamicMessage(values map[string]any) (*dynamicpb.Message, error) {
	m := dynamicpb.NewMessage(t.md)
	return m, setMessage(m, values, "")
}

func setMessage(m protoreflect.Message, values map[string]any, prefix string) error {
	fields := m.Descriptor().Fields()
	for k, v := range values {
		f := fields.ByName(protoreflect.Name(k))
		if f == nil {
			f = fields.ByName(protoreflect.Name(strings.ToLower(k)))
		}
		if f == nil {
			return fmt.Errorf("field %s%s: not a column of the stream's schema", prefix, k)
		}
		switch {
		case f.IsList():
			items, ok := v.([]any)
			if !ok {
				return fmt.Errorf("field %s%s: want a list, have %T", prefix, k, v)
			}
			l := m.Mutable(f).List()
			for _, e := range items {
				if f.Kind() == protoreflect.MessageKind {
					el := l.NewElement()
					sub, ok := e.(map[string]any)
					if !ok {
						return fmt.Errorf("field %s%s: want a record, have %T", prefix, k, e)
					}
					if err := setMessage(el.Message(), sub, prefix+k+"."); err != nil {
						return err
					}
					l.Append(el)
					continue
				}
				pv, err := scalar(f, e)
				if err != nil {
					return fmt.Errorf("field %s%s: %w", prefix, k, err)
				}
				l.Append(pv)
			}
		case f.Kind() == protoreflect.MessageKind:
			sub, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("field %s%s: want a record, have %T", prefix, k, v)
			}
			if err := setMessage(m.Mutable(f).Message(), sub, prefix+k+"."); err != nil {
				return err
			}
		default:
			pv, err := scalar(f, v)
			if err != nil {
				return fmt.Errorf("field %s%s: %w", prefix, k, err)
			}
			m.Set(f, pv)
		}
	}
	return nil
}
