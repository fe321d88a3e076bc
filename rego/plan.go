package rego

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/jsonx"
)

// A plan runs a schema policy's log rule straight on the parsed record,
// without building OPA's input value or running its evaluator, when the
// rule has the shape most routing policies have: one rule, whose body is a
// sequence of comparisons, assignments and calls of pure built-ins on fields
// of the input, and whose head is an object literal. Built-ins are OPA's own
// functions, called with the same arguments the evaluator would pass; only
// object.remove and object.get on the record itself are done here on the
// JSON (they are where OPA spends its time: they copy the whole input).
//
// A plan never guesses: anything it is unsure of — an error, a value of an
// unexpected type, a record with duplicate keys — makes run report !ok, and
// the record is evaluated by OPA instead, which then gives the answer (or
// the error) the policy has always given. TestPlanMatchesOPA holds the two
// paths to byte-identical outputs.
type plan struct {
	steps   []step
	head    []headField
	slots   int
	scratch sync.Pool // *planScratch
}

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

// errNoPlan says why a rule is left to OPA; it is shown in the status.
var errNoPlan = errors.New("no fast path")

func noPlan(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errNoPlan}, args...)...)
}

// compilePlan builds the plan of data.<pkg>.log from the compiled rules.
func compilePlan(c *ast.Compiler, pkg string) (*plan, error) {
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
	plan    plan
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
// (see scanMembers), the record itself (root) or one of its top-level
// members, whose text is canonical (member).
type value struct {
	j      *fastjson.Value
	root   bool
	member int // 1 + the member's index in planRun.members; 0: none
	drop   []string
	a      ast.Value
}

func (v value) defined() bool { return v.j != nil || v.a != nil || v.root || v.member != 0 }

// errUnsure makes run hand the record to OPA.
var errUnsure = errors.New("plan unsure")

// run evaluates the plan for a record, parsed only when the plan needs
// more than the record's top-level members. ok is false when OPA must
// evaluate the record instead.
func (p *plan) run(ctx context.Context, record *lazyRecord, data *[]byte) (_ []Output, ok bool) {
	r := planRun{ctx: ctx, record: record.text, lazy: record, data: data}
	if s, ok := p.scratch.Get().(*planScratch); ok {
		r.scratch = s
	} else {
		r.scratch = new(planScratch)
	}
	r.slots = slices.Grow(r.scratch.slots[:0], p.slots)[:p.slots]
	defer func() {
		clear(r.scratch.members[:cap(r.scratch.members)])
		clear(r.slots) // they point into this record
		r.scratch.slots = r.slots
		p.scratch.Put(r.scratch)
	}()
	members, split, canonical := scanMembers(r.record, r.scratch.raw[:0], &r.scratch.order)
	r.scratch.raw = members
	if split {
		r.members = members
	}
	r.scanned = split && canonical
	if !r.scanned {
		root, err := record.parse()
		if err != nil || !plainJSON(root) {
			return nil, false
		}
		r.root = root
	}
	for i := range p.steps {
		defined, err := r.step(&p.steps[i])
		if err != nil {
			return nil, false
		}
		if !defined {
			return nil, true // the body does not hold: no output
		}
	}
	o, has, err := r.output(p.head)
	if err != nil {
		return nil, false
	}
	if !has {
		return nil, true
	}
	return []Output{o}, true
}

type planRun struct {
	ctx    context.Context
	record []byte
	// members are the record's top-level members sorted by key, if it could
	// be split (scanMembers). When every one is canonical (scanned), root is
	// parsed only if a step needs it; else root is the parsed record.
	scanned bool
	members []rawMember
	root    *fastjson.Value
	lazy    *lazyRecord
	slots   []value
	scratch *planScratch
	data    *[]byte // where the output's data is written (nil: a buffer of its own)
}

// planScratch is what encoding an output needs, reused from record to
// record.
type planScratch struct {
	members []member    // of the parsed objects being encoded
	raw     []rawMember // of the record's top-level object
	slots   []value     // planRun.slots, cleared after each record
	order   keyOrder    // how the last record's keys sorted
}

// step runs one expression of the body. False: the body does not hold
// (an operand is undefined, a condition is false).
func (r *planRun) step(s *step) (bool, error) {
	if s.kind == stepCall {
		if res, handled, err := r.native(s); handled {
			if err != nil || !res.defined() {
				return false, err
			}
			return r.result(s, res), nil
		}
	}
	var buf [4]value
	args := buf[:0]
	for _, op := range s.args {
		v, err := r.eval(op)
		if err != nil || !v.defined() {
			return false, err
		}
		args = append(args, v)
	}
	switch s.kind {
	case stepBind:
		r.slots[s.out] = args[0]
		return true, nil
	case stepEqual:
		return r.equal(args[0], args[1])
	case stepTruth:
		return !r.isFalse(args[0]), nil
	}
	res, err := r.call(s, args)
	if err != nil || !res.defined() {
		return false, err
	}
	return r.result(s, res), nil
}

// result keeps a call's result; false when the call is a condition that
// does not hold.
func (r *planRun) result(s *step, res value) bool {
	if s.out < 0 {
		return !r.isFalse(res)
	}
	r.slots[s.out] = res
	return true
}

// native does the calls most routing policies make, sprintf of strings and
// to_number of an integer's text, without converting their arguments to
// OPA's values: the results are what OPA's built-ins give for the same
// arguments (TestPlanMatchesOPA). handled is false for any other call or
// argument; OPA's built-in then runs as usual.
func (r *planRun) native(s *step) (res value, handled bool, err error) {
	switch s.name {
	case "sprintf":
		format, ok := s.args[0].c.(ast.String)
		if s.args[0].kind != operandConst || !ok || s.args[1].kind != operandArray {
			return value{}, false, nil
		}
		var buf [4]string
		strs := buf[:0]
		for _, e := range s.args[1].elems {
			v, err := r.eval(e)
			if err != nil || !v.defined() {
				return value{}, true, err
			}
			str, ok := r.string(v)
			if !ok {
				return value{}, false, nil
			}
			strs = append(strs, str)
		}
		if out, ok := sprintfStrings(string(format), strs); ok {
			return value{a: ast.String(out)}, true, nil
		}
		args := make([]any, len(strs))
		for i, str := range strs {
			args[i] = str
		}
		return value{a: ast.String(fmt.Sprintf(string(format), args...))}, true, nil
	case "to_number":
		v, err := r.eval(s.args[0])
		if err != nil || !v.defined() {
			return value{}, true, err
		}
		if v.j != nil && v.j.Type() == fastjson.TypeString {
			if n := v.j.GetStringBytes(); plainInteger(n) {
				return value{a: ast.Number(n)}, true, nil
			}
		}
		if t := r.text(v); len(t) > 2 && t[0] == '"' {
			if n := t[1 : len(t)-1]; plainInteger(n) {
				return value{a: ast.Number(n)}, true, nil
			}
		}
	}
	return value{}, false, nil
}

// sprintfStrings is fmt.Sprintf(format, args...) for a format of plain
// text, %% and one %s for each argument; false for any other format.
func sprintfStrings(format string, args []string) (string, bool) {
	n := len(format)
	for _, a := range args {
		n += len(a)
	}
	out := make([]byte, 0, n)
	next := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(format) {
			return "", false
		}
		i++
		switch format[i] {
		case '%':
			out = append(out, '%')
		case 's':
			if next == len(args) {
				return "", false
			}
			out = append(out, args[next]...)
			next++
		default:
			return "", false
		}
	}
	if next != len(args) {
		return "", false
	}
	return string(out), true
}

// plainInteger reports whether to_number gives back s itself as the
// number: -?[1-9][0-9]* or 0, short enough for an int64 ("-0" becomes 0).
func plainInteger(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
		if len(s) == 1 && s[0] == '0' {
			return false
		}
	}
	if len(s) == 0 || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (r *planRun) isFalse(v value) bool {
	if v.j != nil {
		return v.j.Type() == fastjson.TypeFalse
	}
	if v.member != 0 {
		return string(r.text(v)) == "false"
	}
	b, ok := v.a.(ast.Boolean)
	return ok && !bool(b)
}

func (r *planRun) equal(a, c value) (bool, error) {
	if a.j != nil && c.j != nil && a.drop == nil && c.drop == nil && a.j == c.j {
		return true, nil
	}
	if sa, ok := r.string(a); ok {
		if sc, ok := r.string(c); ok {
			return sa == sc, nil
		}
	}
	x, err := r.ast(a)
	if err != nil {
		return false, err
	}
	y, err := r.ast(c)
	if err != nil {
		return false, err
	}
	return x.Compare(y) == 0, nil
}

// text is a member's canonical text; nil for any other value.
func (r *planRun) text(v value) []byte {
	if v.member == 0 {
		return nil
	}
	m := &r.members[v.member-1]
	return r.record[m.val:m.valTo]
}

// string returns the value if it is a string, without converting it.
func (r *planRun) string(v value) (string, bool) {
	if v.j != nil {
		if v.j.Type() != fastjson.TypeString {
			return "", false
		}
		return string(v.j.GetStringBytes()), true
	}
	if t := r.text(v); t != nil {
		if t[0] != '"' {
			return "", false
		}
		s, err := jsonx.Unquote(t)
		return s, err == nil
	}
	s, ok := v.a.(ast.String)
	return string(s), ok
}

func (r *planRun) number(v value) (ast.Number, bool) {
	if v.j != nil {
		if v.j.Type() != fastjson.TypeNumber {
			return "", false
		}
		return ast.Number(v.j.String()), true
	}
	if t := r.text(v); t != nil {
		if t[0] != '-' && (t[0] < '0' || t[0] > '9') {
			return "", false
		}
		return ast.Number(t), true
	}
	n, ok := v.a.(ast.Number)
	return n, ok
}

// parsed turns the record itself or a member of it into the parsed value,
// for what only the parsed value does (nested paths, OPA's built-ins).
func (r *planRun) parsed(v value) (value, error) {
	if !v.root && v.member == 0 {
		return v, nil
	}
	if r.root == nil {
		root, err := r.lazy.parse()
		if err != nil {
			return value{}, errUnsure
		}
		r.root = root
	}
	if v.root {
		return value{j: r.root, drop: v.drop}, nil
	}
	m := &r.members[v.member-1]
	o, _ := r.root.Object()
	j := o.Get(string(r.record[m.key:m.keyTo]))
	if j == nil {
		return value{}, errUnsure
	}
	return value{j: j}, nil
}

func (r *planRun) ast(v value) (ast.Value, error) {
	v, err := r.parsed(v)
	if err != nil {
		return nil, err
	}
	return v.ast()
}

func (v value) ast() (ast.Value, error) {
	if v.a != nil {
		return v.a, nil
	}
	if len(v.drop) == 0 {
		return fromFastJSON(v.j)
	}
	o, _ := v.j.Object() // only objects carry drop
	terms := make([][2]*ast.Term, 0, o.Len())
	var err error
	o.Visit(func(k []byte, x *fastjson.Value) {
		if err != nil || slices.Contains(v.drop, string(k)) {
			return
		}
		var y ast.Value
		if y, err = fromFastJSON(x); err == nil {
			terms = append(terms, [2]*ast.Term{ast.StringTerm(string(k)), ast.NewTerm(y)})
		}
	})
	return ast.NewObject(terms...), err
}

func (r *planRun) eval(op operand) (value, error) {
	switch op.kind {
	case operandConst:
		return value{a: op.c}, nil
	case operandSlot:
		return r.slots[op.slot], nil
	case operandInput:
		if r.scanned {
			if len(op.path) == 0 {
				return value{root: true}, nil
			}
			if len(op.path) == 1 {
				key, ok := op.path[0].(ast.String)
				if !ok { // input[0]: the record is an object
					return value{}, nil
				}
				return value{member: findMember(r.record, r.members, string(key))}, nil
			}
			if _, err := r.parsed(value{root: true}); err != nil {
				return value{}, err
			}
		}
		j := r.root
		for _, c := range op.path {
			if j = child(j, c); j == nil {
				return value{}, nil
			}
		}
		return value{j: j}, nil
	}
	terms := make([]*ast.Term, len(op.elems))
	for i, e := range op.elems {
		v, err := r.eval(e)
		if err != nil || !v.defined() {
			return value{}, err
		}
		x, err := r.ast(v)
		if err != nil {
			return value{}, err
		}
		terms[i] = ast.NewTerm(x)
	}
	if op.kind == operandArray {
		return value{a: ast.NewArray(terms...)}, nil
	}
	pairs := make([][2]*ast.Term, len(terms))
	for i, t := range terms {
		pairs[i] = [2]*ast.Term{op.keys[i], t}
	}
	return value{a: ast.NewObject(pairs...)}, nil
}

// child follows one step of a ref as OPA does: a key of an object, an
// index of an array; anything else is undefined.
func child(j *fastjson.Value, c ast.Value) *fastjson.Value {
	switch k := c.(type) {
	case ast.String:
		if j.Type() != fastjson.TypeObject {
			return nil
		}
		o, _ := j.Object()
		return o.Get(string(k))
	case ast.Number:
		if j.Type() != fastjson.TypeArray {
			return nil
		}
		i, ok := k.Int()
		a, _ := j.Array()
		if !ok || i < 0 || i >= len(a) {
			return nil
		}
		return a[i]
	}
	return nil
}

// call runs a built-in; object.remove and object.get on the record itself
// are done on the JSON.
func (r *planRun) call(s *step, args []value) (_ value, err error) {
	defer func() {
		if recover() != nil { // OPA panics on some numbers; its own path reports it
			err = errUnsure
		}
	}()
	switch s.name {
	case "object.remove":
		if obj := args[0]; obj.root || (obj.j != nil && obj.j.Type() == fastjson.TypeObject) {
			keys, ok := s.removeKeys, s.removeKeys != nil
			if !ok {
				keys, ok = constKeys(args[1].a)
			}
			if ok {
				drop := obj.drop
				switch {
				case len(keys) == 0:
				case len(drop) == 0:
					drop = slices.Clip(keys) // shared: a drop list is only ever appended to through Clip
				default:
					drop = append(slices.Clip(drop), keys...)
				}
				return value{j: obj.j, root: obj.root, drop: drop}, nil
			}
		}
	case "object.get":
		if obj := args[0]; obj.root {
			if key, ok := args[1].a.(ast.String); ok {
				if !slices.Contains(obj.drop, string(key)) {
					if m := findMember(r.record, r.members, string(key)); m != 0 {
						return value{member: m}, nil
					}
				}
				return args[2], nil
			}
		}
		if obj := args[0]; obj.j != nil && obj.j.Type() == fastjson.TypeObject {
			if key, ok := args[1].a.(ast.String); ok {
				if !slices.Contains(obj.drop, string(key)) {
					if v := obj.j.Get(string(key)); v != nil {
						return value{j: v}, nil
					}
				}
				return args[2], nil
			}
		}
	}
	terms := make([]*ast.Term, len(args))
	for i, a := range args {
		x, err := r.ast(a)
		if err != nil {
			return value{}, err
		}
		terms[i] = ast.NewTerm(x)
	}
	var res value
	err = s.fn(topdown.BuiltinContext{Context: r.ctx}, terms, func(t *ast.Term) error {
		if res.defined() {
			return errUnsure // a built-in with several results: leave it to OPA
		}
		res = value{a: t.Value}
		return nil
	})
	if err != nil {
		return value{}, errUnsure
	}
	return res, nil
}

// constKeys returns the string keys of object.remove's second argument.
func constKeys(v ast.Value) ([]string, bool) {
	var keys []string
	ok := true
	add := func(t *ast.Term) {
		s, isStr := t.Value.(ast.String)
		ok = ok && isStr
		keys = append(keys, string(s))
	}
	switch c := v.(type) {
	case *ast.Array:
		c.Foreach(add)
	case ast.Set:
		c.Foreach(add)
	default:
		return nil, false
	}
	return keys, ok
}

// output builds the output as toOutput would from OPA's object. Any field
// toOutput would refuse is left to OPA, which reports it.
func (r *planRun) output(head []headField) (o Output, has bool, err error) {
	for _, f := range head {
		v, err := r.eval(f.val)
		if err != nil {
			return Output{}, false, err
		}
		if !v.defined() {
			return Output{}, false, nil // an undefined value: the rule produces nothing
		}
		if dst := o.stringField(f.key); dst != nil {
			s, ok := r.string(v)
			if !ok {
				return Output{}, false, errUnsure
			}
			*dst = s
			continue
		}
		switch f.key {
		case "timestamp":
			n, ok := r.number(v)
			if !ok {
				return Output{}, false, errUnsure
			}
			o.Timestamp, _ = n.Float64()
		case "data":
			// Most data is the record less a few keys, mostly copied from
			// the record as it stands.
			dst := r.dataBuffer()
			switch {
			case v.root:
				o.Data = appendMembers(dst, r.record, r.members, v.drop, nil, nil)
			case v.member != 0:
				t := r.text(v)
				if string(t) == "null" { // toOutput refuses a null data: OPA's path says so
					return Output{}, false, errUnsure
				}
				o.Data = append(dst, t...)
			case v.j != nil && v.j == r.root && r.members != nil:
				o.Data = appendMembers(dst, r.record, r.members, v.drop, r.root, &r.scratch.members)
			default:
				if o.Data, err = v.appendJSON(dst, &r.scratch.members); err != nil {
					return Output{}, false, err
				}
			}
			if r.data != nil {
				*r.data = o.Data[:0] // kept, grown, for the next record's data
			}
		case "fields":
			x, err := r.ast(v)
			fo, ok := x.(ast.Object)
			if err != nil || !ok {
				return Output{}, false, errUnsure
			}
			m, err := ast.JSON(fo)
			if err != nil {
				return Output{}, false, errUnsure
			}
			o.Fields, _ = m.(map[string]any)
		default: // an unknown field: OPA's path words the error
			return Output{}, false, errUnsure
		}
	}
	if o.complete() != nil {
		return Output{}, false, errUnsure
	}
	return o, true, nil
}

// dataBuffer is an empty buffer for the output's data, with room for the
// whole record: the caller's, or one of its own.
func (r *planRun) dataBuffer() []byte {
	if r.data == nil {
		return make([]byte, 0, len(r.record)+16)
	}
	return slices.Grow((*r.data)[:0], len(r.record)+16)
}

// stringField is where an output's string field goes; nil for the others.
func (o *Output) stringField(name string) *string {
	if name == "sink" {
		return &o.Sink
	}
	return o.StringField(name)
}

// appendJSON encodes the value as appendJSON encodes OPA's: object keys
// sorted, numbers as written, strings re-escaped. null is left to OPA
// (toOutput refuses a null data).
func (v value) appendJSON(dst []byte, scratch *[]member) ([]byte, error) {
	if v.j == nil {
		if _, isNull := v.a.(ast.Null); isNull {
			return nil, errUnsure
		}
		return appendJSON(dst, v.a)
	}
	if v.j.Type() == fastjson.TypeNull {
		return nil, errUnsure
	}
	return appendSorted(dst, v.j, v.drop, scratch), nil
}

type member struct {
	key []byte
	val *fastjson.Value
}

// appendSorted encodes a parsed value with object keys in OPA's order
// (bytewise), leaving out the top-level keys in drop. plainJSON has
// checked the numbers and that no object repeats a key. scratch holds the
// members of the objects being encoded, reused from record to record.
func appendSorted(dst []byte, j *fastjson.Value, drop []string, scratch *[]member) []byte {
	switch j.Type() {
	case fastjson.TypeObject:
		o, _ := j.Object()
		base := len(*scratch)
		o.Visit(func(k []byte, v *fastjson.Value) {
			for _, d := range drop {
				if string(k) == d {
					return
				}
			}
			*scratch = append(*scratch, member{k, v})
		})
		n := len(*scratch) - base
		slices.SortFunc((*scratch)[base:], func(a, b member) int { return bytes.Compare(a.key, b.key) })
		dst = append(dst, '{')
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			m := (*scratch)[base+i] // the slice may have grown under a nested object
			dst = jsonx.AppendBytes(dst, m.key)
			dst = append(dst, ':')
			dst = appendSorted(dst, m.val, nil, scratch)
		}
		*scratch = (*scratch)[:base]
		return append(dst, '}')
	case fastjson.TypeArray:
		a, _ := j.Array()
		dst = append(dst, '[')
		for i, x := range a {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendSorted(dst, x, nil, scratch)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		return jsonx.AppendBytes(dst, j.GetStringBytes())
	case fastjson.TypeNumber:
		return append(dst, j.String()...)
	case fastjson.TypeTrue:
		return append(dst, "true"...)
	case fastjson.TypeFalse:
		return append(dst, "false"...)
	}
	return append(dst, "null"...)
}

// plainJSON reports whether OPA would see the record exactly as parsed:
// every number valid JSON and tame (else OPA's path refuses the record),
// and no object with a key twice (OPA keeps the last, fastjson finds the
// first).
func plainJSON(j *fastjson.Value) bool {
	switch j.Type() {
	case fastjson.TypeObject:
		o, _ := j.Object()
		ok := true
		var few [32][]byte
		seen := few[:0] // a few keys: comparing beats hashing
		var many map[string]bool
		o.Visit(func(k []byte, v *fastjson.Value) {
			if !ok {
				return
			}
			if many == nil && len(seen) == len(few) {
				many = make(map[string]bool, o.Len())
				for _, s := range seen {
					many[string(s)] = true
				}
			}
			if many != nil {
				ok = !many[string(k)]
				many[string(k)] = true
			} else {
				ok = !slices.ContainsFunc(seen, func(s []byte) bool { return bytes.Equal(s, k) })
				seen = append(seen, k)
			}
			ok = ok && plainJSON(v)
		})
		return ok
	case fastjson.TypeArray:
		a, _ := j.Array()
		for _, x := range a {
			if !plainJSON(x) {
				return false
			}
		}
	case fastjson.TypeNumber:
		n := j.String()
		return jsonx.ValidNumber(n) && jsonx.TameNumber(n)
	}
	return true
}
