package rego

import (
	"context"
	"encoding/json"
	"testing"
)

// Any record through the default policies gives valid outputs (whose data
// is JSON) or an error naming the record's fault, never a panic.
func FuzzOutputs(f *testing.F) {
	e, err := Load("../testdata/policies", Options{})
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
	schemas := e.Schemas()
	f.Fuzz(func(t *testing.T, which uint8, record []byte) {
		schema := schemas[int(which)%len(schemas)]
		outs, err := e.Outputs(context.Background(), schema, record)
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
