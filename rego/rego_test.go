package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const defaults = "../testdata/policies"

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

func TestDefaultSLSPolicy(t *testing.T) {
	e, err := Load(defaults, Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := e.EventSources(context.Background(), []byte(`{"project":"p","logstore":"audit","shard":1,"topic":"audit_log","source":"","tags":{}}`))
	if err != nil || len(src) != 1 || src[0].Schema != "sls_audit" {
		t.Fatalf("event sources %+v, %v", src, err)
	}
	rec := `{"__time__":"1732480000","__topic__":"audit_log","__source__":"10.0.0.7","user":"alice","n":12345678901234567890}`
	outs, err := e.Outputs(context.Background(), "sls_audit", []byte(rec))
	if err != nil || len(outs) != 1 {
		t.Fatalf("outputs %+v, %v", outs, err)
	}
	o := outs[0]
	if o.Timestamp != 1732480000 || o.Sourcetype != "sls:audit" || o.Sink != "" || o.ID == "" {
		t.Fatalf("output %+v", o)
	}
	// Big numbers keep every digit: the record is not squeezed through float64.
	if string(o.Data) != `{"__source__":"10.0.0.7","__topic__":"audit_log","n":12345678901234567890,"user":"alice"}` {
		t.Fatalf("data %s", o.Data)
	}
	again, _ := e.Outputs(context.Background(), "sls_audit", []byte(rec))
	if again[0].ID != o.ID {
		t.Fatal("the id of an output without one is not stable")
	}
	none, err := e.Outputs(context.Background(), "sls_audit", []byte(`{"__time__":"1","__topic__":"operation_log"}`))
	if err != nil || len(none) != 0 {
		t.Fatalf("other topic: %+v, %v", none, err)
	}
}

// Swarm's example policies are Rego v0; they load and give Swarm's outputs.
func TestSwarmV0ExampleGivesDocumentedOutput(t *testing.T) {
	e, err := Load(defaults, Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := e.EventSources(context.Background(), []byte(`{"cs":{"bucket":"github-audit-logs","name":"github/x.json.gz"},"data":{"bucket":"github-audit-logs","name":"github/x.json.gz"}}`))
	if err != nil || len(src) != 1 || src[0] != (Source{Parser: "json", Compress: "gzip", Schema: "github_audit"}) {
		t.Fatalf("sources %+v, %v", src, err)
	}
	outs, err := e.Outputs(context.Background(), "github_audit", []byte(`{"@timestamp":1732480000123,"_document_id":"abc","action":"repo.create"}`))
	if err != nil || len(outs) != 1 {
		t.Fatalf("%+v %v", outs, err)
	}
	o := outs[0]
	if o.ID != "abc" || o.Dataset != "github" || o.Table != "audit" || o.Timestamp != 1732480000.123 || string(o.Data) != `{"_document_id":"abc","action":"repo.create"}` {
		t.Fatalf("output %+v data %s", o, o.Data)
	}
}

func TestForbiddenBuiltinRefusedWithFileLineAndName(t *testing.T) {
	dir := writePolicies(t, map[string]string{"schema/x.rego": "package schema.x\n\nlog contains o if {\n\tr := http.send({\"method\": \"get\", \"url\": \"http://example.com\"})\n\to := {\"timestamp\": 1, \"data\": r}\n}\n"})
	_, err := Load(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "x.rego:4: built-in http.send is not allowed") {
		t.Fatalf("err = %v", err)
	}
	dir = writePolicies(t, map[string]string{"x.rego": "package schema.x\n\nlog contains o if {\n\tnet.lookup_ip_addr(\"example.com\")\n\to := {\"timestamp\": 1, \"data\": {}}\n}\n"})
	if _, err := Load(dir, Options{}); err == nil || !strings.Contains(err.Error(), "net.lookup_ip_addr is not allowed") {
		t.Fatalf("net: err = %v", err)
	}
}

func TestUndefinedFunctionSuggestsTheBuiltin(t *testing.T) {
	dir := writePolicies(t, map[string]string{"x.rego": "package schema.x\n\nlog[o] {\n\tstarts_with(input.name, \"github/\")\n\to := {\"timestamp\": 1, \"data\": input}\n}\n"})
	_, err := Load(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "x.rego:4: undefined function starts_with; did you mean startswith?") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoopingPolicyHitsTheTimeLimit(t *testing.T) {
	dir := writePolicies(t, map[string]string{"x.rego": `package schema.x

log contains o if {
	n := count([x | some x in numbers.range(1, 100000000); x % 7 == 3])
	o := {"timestamp": 1, "data": {"n": n}}
}
`})
	e, err := Load(dir, Options{EvalTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.Outputs(context.Background(), "x", []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "exceeded the time limit of 50ms") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}

func TestInvalidOutputsNameTheField(t *testing.T) {
	cases := map[string]string{
		`{"data": {}}`:                                      "field timestamp: required",
		`{"timestamp": "now", "data": {}}`:                  "field timestamp: want a number",
		`{"timestamp": 1}`:                                  "field data: required",
		`{"timestamp": 1, "data": {}, "sink": 3}`:           "field sink: want a string",
		`{"timestamp": 1, "data": {}, "partition": "week"}`: `field partition: "week"`,
		`{"timestamp": 1, "data": {}, "tabel": "t"}`:        "unknown field tabel",
	}
	for out, want := range cases {
		dir := writePolicies(t, map[string]string{"x.rego": "package schema.x\n\nlog contains " + out + " if true\n"})
		e, err := Load(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.Outputs(context.Background(), "x", []byte(`{}`))
		if err == nil || !strings.Contains(err.Error(), "policy schema.x, rule log, output 0: "+want) {
			t.Errorf("%s: err = %v, want %q", out, err, want)
		}
	}
}

func TestBrokenReloadKeepsTheOldSet(t *testing.T) {
	good := "package schema.x\n\nlog contains {\"timestamp\": 1, \"data\": {\"v\": 1}} if true\n"
	dir := writePolicies(t, map[string]string{"x.rego": good})
	e, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Watch(ctx)
	time.Sleep(100 * time.Millisecond) // let the watcher start
	if err := os.WriteFile(filepath.Join(dir, "x.rego"), []byte("package schema.x\n\nlog contains {\"timestamp\": 1, \"data\": http.send({})} if true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Ready() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), "http.send is not allowed") {
		t.Fatalf("Ready() = %v", err)
	}
	outs, err := e.Outputs(context.Background(), "x", []byte(`{}`))
	if err != nil || len(outs) != 1 || string(outs[0].Data) != `{"v":1}` {
		t.Fatalf("old set not running: %+v %v", outs, err)
	}
	// A fixed file loads, and readiness clears.
	if err := os.WriteFile(filepath.Join(dir, "x.rego"), []byte(strings.Replace(good, `"v": 1`, `"v": 2`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err != nil || e.Ready() != nil {
		t.Fatalf("reload: %v ready: %v", err, e.Ready())
	}
	outs, _ = e.Outputs(context.Background(), "x", []byte(`{}`))
	if string(outs[0].Data) != `{"v":2}` {
		t.Fatalf("new set not running: %s", outs[0].Data)
	}
}

func TestPolicyTestsPassAndFailLikeOPA(t *testing.T) {
	var out bytes.Buffer
	res, err := RunTests(context.Background(), defaults, &out, false)
	if err != nil || res.Failed+res.Errors != 0 || res.Passed < 7 {
		t.Fatalf("%+v %v\n%s", res, err, out.String())
	}
	// Break one test in a copy.
	files := map[string]string{}
	_ = filepath.WalkDir(defaults, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(defaults, p)
			files[rel] = string(b)
		}
		return nil
	})
	files["schema/sls_audit_test.rego"] = strings.Replace(files["schema/sls_audit_test.rego"], `o.sourcetype == "sls:audit"`, `o.sourcetype == "wrong"`, 1)
	out.Reset()
	res, err = RunTests(context.Background(), writePolicies(t, files), &out, false)
	if err != nil || res.Failed != 1 || !strings.Contains(out.String(), "test_keeps_audit_log: FAIL") {
		t.Fatalf("%+v %v\n%s", res, err, out.String())
	}
}

func TestOutputsJSONShape(t *testing.T) {
	e, err := Load(defaults, Options{})
	if err != nil {
		t.Fatal(err)
	}
	outs, _ := e.Outputs(context.Background(), "sls_audit", []byte(`{"__time__":"1732480000.25","__topic__":"audit_log"}`))
	b, _ := json.Marshal(outs[0].Output)
	if !strings.Contains(string(b), `"timestamp":1732480000.25`) {
		t.Fatal(string(b))
	}
}

// The event policy's answer for an event is reused while the same policies
// run, unless a policy calls a built-in whose answer may change.
func TestEventAnswersReused(t *testing.T) {
	// The received time differs from batch to batch; the policy reads only
	// the topic, so two answers are kept for the two topics.
	n := 0
	event := func(topic string) []byte {
		n++
		return []byte(fmt.Sprintf(`{"topic":%q,"tags":{"__receive_time__":"%d"}}`, topic, 1764000000+n))
	}
	dir := writePolicies(t, map[string]string{"event.rego": "package event\n\nsrc contains {\"schema\": input.topic} if true\n"})
	e, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		for _, topic := range []string{"a", "b"} {
			srcs, err := e.EventSources(ctx, event(topic))
			if err != nil || len(srcs) != 1 || srcs[0].Schema != topic {
				t.Fatalf("topic %s: %+v %v", topic, srcs, err)
			}
			srcs[0].Schema = "changed by the caller" // must not reach the cache
		}
	}
	if n := len(e.current().events.answers); n != 2 {
		t.Fatalf("%d answers kept, want 2", n)
	}
	// A reload starts afresh: the same event, the new policy's answer.
	if err := os.WriteFile(filepath.Join(dir, "event.rego"), []byte("package event\n\nsrc contains {\"schema\": concat(\"-\", [input.topic, \"v2\"])} if true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if srcs, err := e.EventSources(ctx, event("a")); err != nil || srcs[0].Schema != "a-v2" {
		t.Fatalf("after reload: %+v %v", srcs, err)
	}

	clock := writePolicies(t, map[string]string{"event.rego": "package event\n\nsrc contains {\"schema\": sprintf(\"s%d\", [time.now_ns() % 2])} if true\n"})
	if e, err = Load(clock, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.EventSources(ctx, event("a")); err != nil {
		t.Fatal(err)
	}
	if e.current().events != nil {
		t.Fatal("answers of a policy that reads the clock are kept")
	}
}

// The key of a kept answer is what the event policy reads, or the whole
// event when that cannot be told.
func TestEventInputPaths(t *testing.T) {
	for _, c := range []struct {
		policy string
		want   string // the paths, or "" for the whole event
	}{
		{`src contains {"schema": "s"} if input.logstore == "audit"`, `["logstore"]`},
		{`src contains {"schema": "s"} if { input.data.bucket == "b"; startswith(input.data.name, "x/") }`, `["data" "bucket"] ["data" "name"]`},
		{`src contains {"schema": "s"} if input.tags[k] == "v"`, `["tags"]`},
		{`src contains {"schema": "s"} if input.items[0] == "v"`, `["items" 0]`},
		{`src contains {"schema": "s"} if count(object.keys(input)) > 1`, ""},
		{`src contains {"schema": "s"} if input[k] == "v"`, ""},
		{`src contains {"schema": "s"} if data.lib.ok`, ""},
		{`src contains {"schema": "s"} if { x := input.a with input as {"a": 1}; x == 1 }`, ""},
		{`src contains {"schema": "s"} if true`, ""},
	} {
		dir := writePolicies(t, map[string]string{"event.rego": "package event\n\n" + c.policy + "\n", "lib.rego": "package lib\n\nok if input.z\n"})
		e, err := Load(dir, Options{})
		if err != nil {
			t.Fatalf("%s: %v", c.policy, err)
		}
		var got []string
		for _, p := range e.current().events.paths {
			got = append(got, fmt.Sprint(p))
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: paths %q, want %q", c.policy, strings.Join(got, " "), c.want)
		}
	}
}

// Records evaluated at once, as the transform's workers do, each keep their
// own values on both paths: a record and its plan's output are scratch
// reused from record to record, never shared by two at once.
func TestConcurrentEvaluationsKeepTheirRecords(t *testing.T) {
	for _, full := range []bool{false, true} {
		e, err := Load(defaults, Options{FullEval: full})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 300 {
					n := fmt.Sprintf("%d%09d", w+1, i)
					rec := `{"__time__":"1732480000","__topic__":"audit_log","__source__":"` + n + `","n":` + n + `}`
					outs, err := e.Outputs(context.Background(), "sls_audit", []byte(rec))
					want := `{"__source__":"` + n + `","__topic__":"audit_log","n":` + n + `}`
					if err != nil || len(outs) != 1 || string(outs[0].Data) != want || outs[0].Source != "sls:"+n {
						t.Errorf("full eval %v, record %s: outputs %+v, %v; want data %s", full, rec, outs, err, want)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}
