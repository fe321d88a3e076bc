package plan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/rego"
)

// defaults are the shipped policies.
const defaults = "../../testdata/policies"

func writePolicies(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// planPolicies are shapes beyond the shipped policies that a plan takes:
// conditions, nested paths, array indexes, built-ins, v0 syntax, fields.
var planPolicies = map[string]string{
	"schema/filters.rego": `package schema.filters

log contains {
	"timestamp": to_number(input.ts),
	"data": object.remove(object.remove(input, ["ts"]), {"secret"}),
	"index": lower(object.get(input, "env", "MAIN")),
	"host": input.host.name,
	"sourcetype": sprintf("app:%s:%v", [input.app, input.level]),
} if {
	input.kind != "debug"
	startswith(input.app, "svc")
	input.level >= 2
}
`,
	"schema/nested.rego": `package schema.nested

log contains {
	"id": input.meta.id,
	"timestamp": time.parse_rfc3339_ns(input.t) / 1e9,
	"data": input.payload,
	"fields": {"region": input.region, "first": input.tags[0], "n": 1},
	"sink": "splunk",
}
`,
	"schema/swarm_v0.rego": `package schema.swarm_v0

log[d] {
	input.enabled
	d := {
		"dataset": "audit",
		"table": concat("_", ["t", input.app]),
		"timestamp": input["@timestamp"] * 1 / 1000,
		"data": object.remove(input, ["@timestamp", "enabled"]),
		"partition": "day",
	}
}
`,
	"schema/whole.rego": `package schema.whole

log contains {"timestamp": input.ts, "data": input} if input.ts > 0
`,
	// Iterates: OPA evaluates this one; it is here to prove the fallback.
	"schema/iterate.rego": `package schema.iterate

log contains {"timestamp": r.ts, "data": r} if {
	some r in input.Records
}
`,
}

// TestPlanMatchesOPA runs every testdata policy and planPolicies on the
// fast path (Outputs and OutputsInto, record by record) and through OPA,
// over the records of the policies' tests and a corpus of random ones, and
// wants the same outputs, byte for byte, and the same errors.
func TestPlanMatchesOPA(t *testing.T) {
	for _, dir := range []string{defaults, writePolicies(t, planPolicies)} {
		fast, fastReg := loadWith(t, dir, false)
		full, _ := loadWith(t, dir, true)
		st := fast.Status()
		records := planCorpus(rand.New(rand.NewPCG(7, 11)), 5000)
		for _, schema := range fast.Schemas() {
			planned := st.FastPath[schema] == "plan"
			if want := schema != "iterate"; planned != want {
				t.Errorf("schema %s: fast path %q, want a plan: %v", schema, st.FastPath[schema], want)
			}
			before := testutil.ToFloat64(counter(t, fastReg, "plan"))
			produced := 0
			var data []byte
			for i, rec := range records {
				got, gotErr := fast.Outputs(context.Background(), schema, rec)
				if i%2 == 1 { // as the transform calls it, the data written into one buffer, record after record
					got, gotErr = fast.OutputsInto(context.Background(), schema, rec, &data)
				}
				want, wantErr := full.Outputs(context.Background(), schema, rec)
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("schema %s, record %s:\nfast path error %v\nOPA error       %v", schema, rec, gotErr, wantErr)
				}
				if (len(got) > 0 || len(want) > 0) && (!reflect.DeepEqual(got, want) || encoded(got) != encoded(want)) {
					t.Fatalf("schema %s, record %s:\nfast path %s\nOPA       %s", schema, rec, show(got), show(want))
				}
				produced += len(want)
			}
			took := testutil.ToFloat64(counter(t, fastReg, "plan")) - before
			t.Logf("schema %s: %d records, %d outputs, %.0f on the fast path", schema, len(records), produced, took)
			if planned && (took < float64(len(records))/2 || produced < 20) {
				t.Errorf("schema %s: only %.0f of %d records took the fast path, %d outputs: the corpus does not exercise it", schema, took, len(records), produced)
			}
			if !planned && took != 0 {
				t.Errorf("schema %s has no plan, yet %.0f records took the fast path", schema, took)
			}
		}
	}
}

func loadWith(t *testing.T, dir string, full bool) (*rego.Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	e, err := rego.Load(dir, rego.Options{FullEval: full, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	return e, reg
}

func counter(t *testing.T, reg *prometheus.Registry, path string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_policy_evaluations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == path {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatal("no sluice_policy_evaluations_total metric")
	return nil
}

// encoded is the outputs as the transform writes them to OUT: DeepEqual
// takes -0 and 0 for the same timestamp; the bytes do not.
func encoded(outs []rego.Output) string {
	var b []byte
	for _, o := range outs {
		b, _ = o.Output.AppendJSON(b)
	}
	return string(b)
}

func show(outs []rego.Output) string {
	var b strings.Builder
	for _, o := range outs {
		fmt.Fprintf(&b, "\n  %+v data=%s", o, o.Data)
	}
	return b.String()
}

// planCorpus makes records around the fields the policies read, with
// values of every type, and now and then a record OPA must see first:
// a repeated key, a bad number, not an object, not JSON.
func planCorpus(r *rand.Rand, n int) [][]byte {
	records := [][]byte{
		[]byte(`{"__time__":"1732480000","__topic__":"audit_log","__source__":"10.0.0.7","__tag__:__hostname__":"ecs-1","user":"alice","action":"DeleteBucket"}`),
		[]byte(`{"@timestamp":1732480000123,"_document_id":"2ZEl5hGZ9NZ1ZmBvUN6CXQ","action":"repo.create","actor":"octocat"}`),
		[]byte(`{"ts":"1732480000.5","kind":"audit","app":"svc-a","level":3,"host":{"name":"h1"},"secret":"x","env":"Prod"}`),
		[]byte(`{"meta":{"id":"m1"},"t":"2024-11-24T00:00:00.123Z","payload":{"b":1,"a":[1,{"z":0,"y":"\u00e9"}]},"region":"eu","tags":["x","y"]}`),
		[]byte(`{"Records":[{"ts":1,"a":1},{"ts":2,"b":"\n"}]}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","__topic__":"other"}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","n":01}`),
		[]byte(`[1,2]`), []byte(`"audit_log"`), []byte(`{"a":`), []byte(`null`),
		[]byte(` { "__time__" : "1732480000" , "__topic__":"audit_log",	"b": { "y": 1, "x": [ 1 , 2 ] }, "a":{"b":1} } `),
		// Not JSON, each in a way a plan's own scan of the text must see.
		[]byte(`{"__topic__":"audit_log","__time__":"1","x":trux}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","x":fals3}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1"} x`),
		[]byte(`{"__topic__":"audit_log","__time__":"1"}}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1",}`),
		[]byte(`{"__topic__":"audit_log" "__time__":"1"}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","x":[1,]}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","x":{"a":1,}}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","x":"\x"}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","x":"` + "\x01" + `"}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","x":1.}`),
		[]byte(`{"__topic__":"audit_log","__time__":"1","x":-}`),
	}
	for len(records) < n {
		rec := []byte(randomRecord(r))
		if r.IntN(10) == 0 { // white space between tokens: the record's text cannot be copied as it is
			var b bytes.Buffer
			if json.Indent(&b, rec, "", pick(r, " ", "\t")) == nil {
				rec = b.Bytes()
			}
		}
		records = append(records, rec)
	}
	return records
}

var corpusKeys = []string{
	"__time__", "__topic__", "__source__", "@timestamp", "_document_id", "ts", "kind", "app", "level",
	"host", "secret", "env", "meta", "t", "payload", "region", "tags", "enabled", "Records", "user", "é", "a\"b",
}

// families are the fields each policy reads: a record starts from one.
var families = [][]string{
	{"__time__", "__topic__", "__source__"},
	{"@timestamp", "_document_id"},
	{"ts", "kind", "app", "level", "host", "secret", "env"},
	{"meta", "t", "payload", "region", "tags"},
	{"enabled", "app", "@timestamp"},
}

func randomRecord(r *rand.Rand) string {
	keys := slices.Clone(families[r.IntN(len(families))])
	for range r.IntN(6) {
		keys = append(keys, corpusKeys[r.IntN(len(corpusKeys))])
	}
	r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	var parts []string
	seen := map[string]bool{}
	for _, k := range keys {
		if (seen[k] && r.IntN(20) != 0) || r.IntN(12) == 0 { // now and then a key repeated, or left out
			continue
		}
		seen[k] = true
		parts = append(parts, strconv.Quote(k)+":"+randomValue(r, k, 0))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// randomValue leans towards values the policies accept for key k, so that
// most records produce outputs, and otherwise picks anything.
func randomValue(r *rand.Rand, k string, depth int) string {
	if r.IntN(10) > 0 && depth == 0 {
		switch k {
		case "__time__":
			return strconv.Quote(pick(r, "1732480000", "1732480000.25", "1e9", "-5", "0", " 12", "0x10", "inf", "abc", "1_000",
				"-0", "007", "+5", "-1732480000", "123456789012345678", "1234567890123456789012"))
		case "__topic__":
			return strconv.Quote(pick(r, "audit_log", "audit_log", "operation_log"))
		case "@timestamp", "ts":
			return pick(r, "1732480000123", "1732480000123.5", "1.7e12", "0", "-1", "123456789012345678901234567890", `"1732480000"`)
		case "kind":
			return strconv.Quote(pick(r, "audit", "debug", "other"))
		case "app":
			return strconv.Quote(pick(r, "svc-a", "svc-b", "web", "svc\u00e9"))
		case "level":
			return pick(r, "1", "2", "3", "2.5", `"3"`, "true")
		case "host":
			return pick(r, `{"name":"h1"}`, `{"name":"h\"2"}`, `{"name":5}`, `"h3"`)
		case "t":
			return strconv.Quote(pick(r, "2024-11-24T00:00:00Z", "2024-11-24T00:00:00.123456789+02:00", "yesterday"))
		case "meta":
			return pick(r, `{"id":"m1"}`, `{"id":7}`, `{}`)
		case "tags":
			return pick(r, `["a","b"]`, `[]`, `[1]`)
		case "enabled":
			return pick(r, "true", "false", "1", "null")
		}
	}
	switch n := r.IntN(9); {
	case n == 0 && depth < 2:
		var parts []string
		for range r.IntN(4) {
			k := corpusKeys[r.IntN(len(corpusKeys))]
			parts = append(parts, strconv.Quote(k)+":"+randomValue(r, k, depth+1))
		}
		return "{" + strings.Join(parts, ",") + "}"
	case n == 1 && depth < 2:
		var parts []string
		for range r.IntN(4) {
			parts = append(parts, randomValue(r, "", depth+1))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case n == 2:
		return pick(r, "0", "-0", "1.50", "1e3", "-2.5E-3", "18446744073709551616", "3")
	case n == 3:
		return pick(r, "true", "false", "null")
	case n == 4:
		return pick(r, `"tab\there"`, `"\u0041\u00e9\ud83d\ude00"`, `"quote\"back\\slash"`, "\"bad\xffutf8\"", `"<&>"`, `"\u0001"`)
	}
	return strconv.Quote(pick(r, "alice", "bob", "", "DeleteBucket", "x y z"))
}

func pick(r *rand.Rand, options ...string) string { return options[r.IntN(len(options))] }
