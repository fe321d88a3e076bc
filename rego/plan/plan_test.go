package plan_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sluicehq/sluice/rego/plan"
)

func compile(t *testing.T, src string) (*plan.Plan, error) {
	t.Helper()
	c := ast.NewCompiler()
	c.Compile(map[string]*ast.Module{"x.rego": ast.MustParseModule(src)})
	if c.Failed() {
		t.Fatal(c.Errors)
	}
	return plan.Compile(c, "data.schema.x")
}

// The boundary as rego uses it: Compile takes the compiled policies, Run a
// record, and the answer is the rule's object, nothing, or "ask OPA".
func TestRunGivesTheRulesObjectOrDeclines(t *testing.T) {
	p, err := compile(t, `package schema.x

log contains {"timestamp": to_number(input.t), "data": object.remove(input, ["t"]), "source": sprintf("a:%s", [input.s]), "sink": "s1"} if input.k == "yes"
`)
	if err != nil {
		t.Fatal(err)
	}
	var out plan.Output
	for _, c := range []struct {
		record       string
		produced, ok bool
		data         string
		strings      []plan.Field
	}{
		{`{"t":"12","s":"b","k":"yes","z":[1, 2]}`, true, true, `{"k":"yes","s":"b","z":[1,2]}`, []plan.Field{{"sink", "s1"}, {"source", "a:b"}}},
		{`{"t":"12","s":"b","k":"no"}`, false, true, "", nil},
		{`{"t":"12","s":"b"}`, false, true, "", nil},                      // input.k undefined
		{`{"t":"soon","s":"b","k":"yes"}`, false, false, "", nil},         // to_number fails: OPA words the error
		{`{"t":"12","s":"b","k":"yes","k":"yes"}`, false, false, "", nil}, // a key twice: OPA's
		{`[1]`, false, true, "", nil},
	} {
		produced, ok := p.Run(context.Background(), recordOf(c.record), &out)
		if produced != c.produced || ok != c.ok {
			t.Errorf("record %s: produced %v, ok %v; want %v, %v", c.record, produced, ok, c.produced, c.ok)
			continue
		}
		if !produced {
			continue
		}
		slices.SortFunc(out.Strings, func(a, b plan.Field) int { return strings.Compare(a.Key, b.Key) })
		if out.Timestamp != 12 || string(out.Data) != c.data || !slices.Equal(out.Strings, c.strings) {
			t.Errorf("record %s: output %+v data %s; want data %s, strings %v", c.record, out, out.Data, c.data, c.strings)
		}
	}
}

func recordOf(s string) *plan.Record {
	var r plan.Record
	r.Reset([]byte(s))
	return &r
}

func TestCompileSaysWhyNot(t *testing.T) {
	_, err := compile(t, `package schema.x

log contains {"timestamp": r.ts, "data": r} if {
	some r in input.Records
}
`)
	if !errors.Is(err, plan.ErrUnsupported) {
		t.Fatalf("a rule that iterates: %v, want ErrUnsupported", err)
	}
}
