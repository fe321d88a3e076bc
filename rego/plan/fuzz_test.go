package plan_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/sluicehq/sluice/rego"
)

// Any record through the default policies gives valid outputs (whose data
// is JSON) or an error naming the record's fault, never a panic; and the
// fast path gives what OPA gives.
func FuzzOutputs(f *testing.F) {
	e, err := rego.Load(defaults, rego.Options{})
	if err != nil {
		f.Fatal(err)
	}
	full, err := rego.Load(defaults, rego.Options{FullEval: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), []byte(`{"__topic__":"audit_log","user":"alice","action":"CreateBucket","__time__":"1795000000","seq":"1"}`))
	f.Add(uint8(1), []byte(`{"@timestamp":1795000000000,"action":"repo.create","actor":"bob"}`))
	f.Add(uint8(1), []byte(`{"@timestamp":"soon","action":null}`))
	f.Add(uint8(2), []byte(`{"__time__":"-1","__topic__":"\u0000"}`))
	f.Add(uint8(0), []byte(`[1,2,3]`))
	f.Add(uint8(0), []byte(`{"a":1e999}`))
	f.Add(uint8(1), []byte(`{"@timestamp":1e99999999999,"action":"x"}`)) // OPA panicked on this in arithmetic
	f.Add(uint8(0), []byte(`{"@timestamp":1e9999999,"":""}`))            // OPA's division takes 20 s on this
	schemas := e.Schemas()
	f.Fuzz(func(t *testing.T, which uint8, record []byte) {
		schema := schemas[int(which)%len(schemas)]
		outs, err := e.Outputs(context.Background(), schema, record)
		want, wantErr := full.Outputs(context.Background(), schema, record)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || ((len(outs) > 0 || len(want) > 0) && (!reflect.DeepEqual(outs, want) || encoded(outs) != encoded(want))) {
			t.Fatalf("schema %s, record %q:\nfast path %v %s\nOPA       %v %s", schema, record, err, show(outs), wantErr, show(want))
		}
		if err != nil {
			return
		}
		for _, o := range outs {
			if !json.Valid(o.Data) {
				t.Fatalf("schema %s: output data %q is not JSON (record %q)", schema, o.Data, record)
			}
			if o.Timestamp <= 0 {
				t.Fatalf("schema %s: output with timestamp %v passed validation", schema, o.Timestamp)
			}
		}
	})
}
