package gcs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Pretty-printed objects as jq and Python's json.dumps(indent=2) print
// them put a nested {} (or [], or a one-line object) on a line of its own.
// Each top-level object is one record, whole; nothing goes to the DLQ and
// no nested piece reaches the policies as a record of its own.
func TestJSONPrettyPrintedNestedObjectsOnTheirOwnLineStayWhole(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"jq-indent.json", "pretty-compact.jsonl"},              // jq . (jq 1.6)
		{"python-indent.json", "pretty-compact.jsonl"},          // json.dumps(v, indent=2)
		{"oneline-nested.json", "oneline-nested-compact.jsonl"}, // hand-formatted: one-line objects in an array
	} {
		t.Run(tc.in, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.in))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", tc.want))
			if err != nil {
				t.Fatal(err)
			}
			c := parseString(t, "json", string(in))
			check(t, c.bads)
			check(t, c.recs, strings.Split(strings.TrimSpace(string(want)), "\n")...)
		})
	}
}

// A broken value still ends at the first line that cannot continue it,
// or that opens an object at its first byte (what is nested is
// indented), and that line starts afresh: a truncated line followed by
// whole records loses only itself, even where the next record could
// have been a value of what was cut (after "key": or in an array). A
// broken pretty-printed value is one DLQ entry, not one per line.
func TestJSONBrokenValueBeforeWholeRecordsLosesOnlyItself(t *testing.T) {
	c := parseString(t, "json", "{\"a\":1,\n{\"b\":2}\n{\"c\":[1,\n{\"d\":4}\n{\"cut\": \n{\n  \"e\": {}\n}\n"+
		"{\n  \"f\": 1\n  \"g\": {}\n}\n{\"h\":[]}\n")
	check(t, c.recs, `{"b":2}`, `{"d":4}`, `{"e":{}}`, `{"h":[]}`)
	check(t, c.bads, `line 1: {"a":1,`, "line 3: {\"c\":[1,", "line 5: {\"cut\": ", "line 9: {\n  \"f\": 1\n  \"g\": {}\n}")
}

// A pretty-printed value longer than max_record_bytes is one DLQ entry;
// it is read past to its end, and the next record flows.
func TestJSONPrettyPrintedValueOverMaxIsOneEntry(t *testing.T) {
	var b strings.Builder
	b.WriteString("{\n  \"x\": [\n")
	for b.Len() < 3000 {
		b.WriteString("    {},\n    {\"k\": \"}\"},\n")
	}
	b.WriteString("    {}\n  ]\n}\n{\"after\": 1}\n")
	c := parseString(t, "json", b.String())
	check(t, c.recs, `{"after": 1}`)
	if len(c.bads) != 1 || !strings.Contains(c.reasons[0], "max_record_bytes") {
		t.Fatalf("bad: %q %q", c.bads, c.reasons)
	}
}
