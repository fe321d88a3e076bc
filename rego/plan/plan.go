// Package plan is the policy engine's fast path: it compiles the common
// shape of a schema policy's log rule into a plan, and runs the plan on a
// record's JSON without OPA's evaluator. It exists for speed alone: OPA
// builds its input value from the whole record and copies it again for
// object.remove, which made it ~70 % of the transform stage; a plan answers
// the default policy in a few µs instead of ~25 (docs/PERFORMANCE.md,
// docs/POLICIES.md "Fast path").
//
// The subset: one rule `log contains {…} if {…}` (or Swarm's v0 `log[d] {
// …; d := {…} }`) whose head is an object literal and whose body is a
// sequence of comparisons, assignments and calls of pure built-ins
// (pureBuiltins) on input fields reached by constant paths (input.a.b,
// input["@timestamp"], input.tags[0]). Iteration, several log rules, not,
// with, else, data. references and user functions are not supported:
// Compile returns an error wrapping ErrUnsupported that says why, and the
// caller evaluates that policy with OPA.
//
// Built-ins are OPA's own functions, called with the arguments OPA's
// evaluator would pass; only object.remove and object.get on the record
// itself, sprintf of strings and to_number of an integer's text are done
// here, on the JSON. When the record's top-level values are written as OPA
// writes them (every record the SLS fetcher writes), the plan answers from
// the record's text without parsing it (rawout.go).
//
// A plan never guesses: anything it is unsure of — an error, a value of an
// unexpected type, a record with duplicate keys — makes Run report !ok,
// and the caller evaluates the record with OPA, which then gives the answer
// (or the error) the policy has always given. The tests beside this file
// (TestPlanMatchesOPA, FuzzOutputs) hold the two paths to byte-identical
// outputs and identical errors, through the rego package's Engine.
//
// The boundary: rego hands Compile its compiled policies (an ast.Compiler)
// and a schema package's path; Run takes one record and returns the output
// object the rule made, or nothing, or !ok. Turning that object into a
// sluice output (which keys are known, the id, the checks) stays with rego,
// which applies the same checks to OPA's answers.
package plan

import (
	"errors"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// A Plan runs one schema policy's log rule; it is safe for concurrent use.
type Plan struct {
	steps   []step
	head    []headField
	slots   int
	scratch sync.Pool // *planScratch
}

// Output is the object the rule made for a record: its timestamp, data
// and fields keys, and every other key as a string (a key whose value is
// not a string makes Run report !ok). The caller checks it as it checks
// OPA's outputs, and asks OPA when it refuses it.
type Output struct {
	Strings   []Field // in the head's order
	Timestamp float64 // 0: no timestamp key
	Data      []byte  // the data key as JSON (never JSON null); nil: none
	Fields    map[string]any
}

// Field is one string-valued key of an output.
type Field struct{ Key, Value string }

type headField struct {
	key string
	val operand
}

type operandKind uint8

const (
	operandConst  operandKind = iota
	operandInput              // a path into the record
	operandSlot               // a local bound by an earlier step
	operandArray              // an array literal with locals in it
	operandObject             // an object literal with locals in its values
)

type operand struct {
	kind  operandKind
	c     ast.Value
	path  []ast.Value // ast.String or ast.Number components after input
	slot  int
	elems []operand
	keys  []*ast.Term // of an object literal, beside elems
}

type stepKind uint8

const (
	stepBind  stepKind = iota // slot = operand
	stepEqual                 // a = b, both known: they must be equal
	stepCall                  // a built-in: result into out, or must not be false
	stepTruth                 // a lone term: must be defined and not false
)

type step struct {
	kind stepKind
	name string
	fn   topdown.BuiltinFunc
	args []operand
	out  int // slot for the result; -1 when the call is a condition
	// removeKeys are object.remove's keys when they are a constant.
	removeKeys []string
}

// pureBuiltins may run in a plan: they depend on their arguments alone.
var pureBuiltins = map[string]bool{
	"eq": true, "equal": true, "neq": true, "lt": true, "lte": true, "gt": true, "gte": true,
	"plus": true, "minus": true, "mul": true, "div": true, "rem": true,
	"abs": true, "round": true, "ceil": true, "floor": true,
	"to_number": true, "format_int": true, "sprintf": true,
	"startswith": true, "endswith": true, "contains": true, "lower": true, "upper": true,
	"trim": true, "trim_space": true, "trim_prefix": true, "trim_suffix": true, "trim_left": true, "trim_right": true,
	"concat": true, "substring": true, "replace": true, "split": true, "indexof": true,
	"count": true, "is_string": true, "is_number": true, "is_boolean": true, "is_null": true,
	"is_object": true, "is_array": true, "type_name": true,
	"object.get": true, "object.remove": true, "object.keys": true,
	"time.parse_rfc3339_ns": true,
}

// ErrUnsupported is wrapped by Compile's error when the rule is beyond the
// subset a plan handles; the error says why, and is shown in the status.
var ErrUnsupported = errors.New("no fast path")

func noPlan(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

// Compile builds the plan of <pkg>.log (pkg: "data.schema.<name>") from
// the compiled policies. The error wraps ErrUnsupported when the rule is
// not of the subset: evaluate it with OPA.
func Compile(c *ast.Compiler, pkg string) (*Plan, error) {
	rules := c.GetRulesExact(ast.MustParseRef(pkg + ".log"))
	if len(rules) != 1 {
		return nil, noPlan("%d log rules (a plan handles one)", len(rules))
	}
	r := rules[0]
	if r.Else != nil || r.Default || r.Head.RuleKind() != ast.MultiValue || r.Head.Key == nil || r.Head.Value != nil {
		return nil, noPlan("log is not a single `log contains {…} if {…}` rule")
	}
	b := planBuilder{slots: map[ast.Var]int{}, objects: map[ast.Var]ast.Object{}}
	for _, e := range r.Body {
		if err := b.expr(e); err != nil {
			return nil, err
		}
	}
	var head ast.Object
	switch k := r.Head.Key.Value.(type) {
	case ast.Object:
		head = k
	case ast.Var:
		head = b.objects[k]
	}
	if head == nil {
		return nil, noPlan("the output is not an object literal")
	}
	var err error
	head.Foreach(func(k, v *ast.Term) {
		key, ok := k.Value.(ast.String)
		if !ok && err == nil {
			err = noPlan("output key %v is not a string", k)
			return
		}
		op, e := b.operand(v)
		if e != nil && err == nil {
			err = e
		}
		b.plan.head = append(b.plan.head, headField{key: string(key), val: op})
	})
	if err != nil {
		return nil, err
	}
	b.plan.slots = len(b.slots)
	return &b.plan, nil
}

type planBuilder struct {
	plan    Plan
	slots   map[ast.Var]int
	objects map[ast.Var]ast.Object // locals bound to an object literal with locals in it: only the head may use them
}

func (b *planBuilder) newSlot(v ast.Var) int {
	n := len(b.slots)
	b.slots[v] = n
	return n
}

func (b *planBuilder) unbound(t *ast.Term) (ast.Var, bool) {
	v, ok := t.Value.(ast.Var)
	if !ok {
		return "", false
	}
	_, bound := b.slots[v]
	_, obj := b.objects[v]
	return v, !bound && !obj
}

func (b *planBuilder) expr(e *ast.Expr) error {
	if e.Negated || len(e.With) > 0 {
		return noPlan("`not` or `with` in the body")
	}
	switch t := e.Terms.(type) {
	case *ast.Term:
		op, err := b.operand(t)
		if err != nil {
			return err
		}
		b.plan.steps = append(b.plan.steps, step{kind: stepTruth, args: []operand{op}, out: -1})
		return nil
	case []*ast.Term:
		if e.IsEquality() {
			return b.equality(t[1], t[2])
		}
		name := e.Operator().String()
		bi := ast.BuiltinMap[name]
		fn := topdown.GetBuiltin(name)
		if bi == nil || fn == nil || !pureBuiltins[name] {
			return noPlan("calls %s", name)
		}
		arity := bi.Decl.Arity()
		args, out := t[1:], ast.Var("")
		switch {
		case len(args) == arity+1:
			v, ok := b.unbound(args[arity])
			if !ok {
				return noPlan("the result of %s is compared, not assigned", name)
			}
			args, out = args[:arity], v
		case len(args) != arity:
			return noPlan("%s with %d arguments", name, len(args))
		}
		s := step{kind: stepCall, name: name, fn: fn, out: -1}
		for _, a := range args {
			op, err := b.operand(a)
			if err != nil {
				return err
			}
			s.args = append(s.args, op)
		}
		if out != "" {
			s.out = b.newSlot(out)
		}
		if name == "object.remove" && s.args[1].kind == operandConst {
			if keys, ok := constKeys(s.args[1].c); ok {
				s.removeKeys = keys
			}
		}
		b.plan.steps = append(b.plan.steps, s)
		return nil
	}
	return noPlan("a %T in the body", e.Terms)
}

func (b *planBuilder) equality(x, y *ast.Term) error {
	if _, ok := b.unbound(x); !ok {
		x, y = y, x
	}
	if v, ok := b.unbound(x); ok {
		if obj, isObj := y.Value.(ast.Object); isObj && !y.IsGround() {
			b.objects[v] = obj
			return nil
		}
		op, err := b.operand(y)
		if err != nil {
			return err
		}
		b.plan.steps = append(b.plan.steps, step{kind: stepBind, args: []operand{op}, out: b.newSlot(v)})
		return nil
	}
	a, err := b.operand(x)
	if err != nil {
		return err
	}
	c, err := b.operand(y)
	if err != nil {
		return err
	}
	b.plan.steps = append(b.plan.steps, step{kind: stepEqual, args: []operand{a, c}, out: -1})
	return nil
}

func (b *planBuilder) operand(t *ast.Term) (operand, error) {
	if t.IsGround() {
		if _, isRef := t.Value.(ast.Ref); !isRef {
			return operand{kind: operandConst, c: t.Value}, nil
		}
	}
	switch v := t.Value.(type) {
	case ast.Var:
		if n, ok := b.slots[v]; ok {
			return operand{kind: operandSlot, slot: n}, nil
		}
		return operand{}, noPlan("%v is used where a plan cannot follow it", v)
	case ast.Ref:
		if !v[0].Equal(ast.InputRootDocument) {
			return operand{}, noPlan("refers to %v (only input is followed)", v)
		}
		op := operand{kind: operandInput}
		for _, c := range v[1:] {
			switch c.Value.(type) {
			case ast.String, ast.Number:
				op.path = append(op.path, c.Value)
			default:
				return operand{}, noPlan("iterates or looks up %v", v)
			}
		}
		return op, nil
	case *ast.Array:
		op := operand{kind: operandArray}
		for i := 0; i < v.Len(); i++ {
			e, err := b.operand(v.Elem(i))
			if err != nil {
				return operand{}, err
			}
			op.elems = append(op.elems, e)
		}
		return op, nil
	case ast.Object:
		op := operand{kind: operandObject}
		var err error
		v.Foreach(func(k, x *ast.Term) {
			if err != nil {
				return
			}
			if !k.IsGround() {
				err = noPlan("an object key with locals in it")
				return
			}
			var e operand
			if e, err = b.operand(x); err == nil {
				op.keys = append(op.keys, k)
				op.elems = append(op.elems, e)
			}
		})
		return op, err
	}
	return operand{}, noPlan("a %s with locals in it", ast.ValueName(t.Value))
}

// value is what an operand holds while a plan runs: a part of the record
// (less the keys object.remove took out) or a value a built-in made. A part
// of the record is a parsed value (j), or, when the record was not parsed
