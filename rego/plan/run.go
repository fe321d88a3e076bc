package plan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/jsonx"
	"github.com/sluicehq/sluice/rego/internal/astjson"
)

// Record is one record's JSON text, parsed at most once: by the plan when
// it needs more than the record's top-level members, or by the caller when
// the plan declines and OPA must see the record. The zero Record is ready;
// Reset readies it for the next record and keeps its parser.
type Record struct {
	text   []byte
	parser fastjson.Parser
	parsed bool
	v      *fastjson.Value
	err    error
}

// Reset makes r the record text, not yet parsed.
func (r *Record) Reset(text []byte) {
	r.text, r.parsed, r.v, r.err = text, false, nil, nil
}

// Parse parses the record on the first call and returns that result on
// every call after.
func (r *Record) Parse() (*fastjson.Value, error) {
	if !r.parsed {
		r.v, r.err = r.parser.ParseBytes(r.text)
		r.parsed = true
	}
	return r.v, r.err
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

// errUnsure makes Run hand the record to OPA.
var errUnsure = errors.New("plan unsure")

// Run evaluates the plan for a record, parsed only when the plan needs
// more than the record's top-level members. It writes the output into
// *out, reusing out.Strings' array, and the output's data into out.Data's
// array (one of its own, sized for the record, when out.Data is nil).
// produced is false when the rule makes no output for the record; ok is
// false when the plan is unsure: evaluate the record with OPA instead.
func (p *Plan) Run(ctx context.Context, record *Record, out *Output) (produced, ok bool) {
	*out = Output{Strings: out.Strings[:0], Data: out.Data[:0]}
	r := planRun{ctx: ctx, record: record.text, lazy: record, out: out}
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
		root, err := record.Parse()
		if err != nil || !astjson.Plain(root) {
			return false, false
		}
		r.root = root
	}
	for i := range p.steps {
		defined, err := r.step(&p.steps[i])
		if err != nil {
			return false, false
		}
		if !defined {
			return false, true // the body does not hold: no output
		}
	}
	produced, err := r.output(p.head)
	return produced, err == nil
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
	lazy    *Record
	slots   []value
	scratch *planScratch
	out     *Output
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
		root, err := r.lazy.Parse()
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
		return astjson.From(v.j)
	}
	o, _ := v.j.Object() // only objects carry drop
	terms := make([][2]*ast.Term, 0, o.Len())
	var err error
	o.Visit(func(k []byte, x *fastjson.Value) {
		if err != nil || slices.Contains(v.drop, string(k)) {
			return
		}
		var y ast.Value
		if y, err = astjson.From(x); err == nil {
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
			if j = astjson.Child(j, c); j == nil {
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

// output builds the output from the head; produced is false when a value
// is undefined (the rule produces nothing). A value of a type the caller
// would refuse is left to OPA, which words the error.
func (r *planRun) output(head []headField) (produced bool, err error) {
	o := r.out
	for _, f := range head {
		v, err := r.eval(f.val)
		if err != nil || !v.defined() {
			return false, err
		}
		switch f.key {
		case "timestamp":
			n, ok := r.number(v)
			if !ok {
				return false, errUnsure
			}
			o.Timestamp, _ = n.Float64()
		case "data":
			if o.Data, err = r.data(v); err != nil {
				return false, err
			}
		case "fields":
			x, err := r.ast(v)
			fo, ok := x.(ast.Object)
			if err != nil || !ok {
				return false, errUnsure
			}
			m, err := ast.JSON(fo)
			if err != nil {
				return false, errUnsure
			}
			o.Fields, _ = m.(map[string]any)
		default:
			s, ok := r.string(v)
			if !ok {
				return false, errUnsure
			}
			o.Strings = append(o.Strings, Field{Key: f.key, Value: s})
		}
	}
	return true, nil
}

// data writes the data value as JSON into the output's buffer. Most data
// is the record less a few keys, mostly copied from the record as it
// stands.
func (r *planRun) data(v value) ([]byte, error) {
	dst := r.dataBuffer()
	switch {
	case v.root:
		return appendMembers(dst, r.record, r.members, v.drop, nil, nil), nil
	case v.member != 0:
		t := r.text(v)
		if string(t) == "null" { // a null data is refused: OPA's path says so
			return nil, errUnsure
		}
		return append(dst, t...), nil
	case v.j != nil && v.j == r.root && r.members != nil:
		return appendMembers(dst, r.record, r.members, v.drop, r.root, &r.scratch.members), nil
	}
	return v.appendJSON(dst, &r.scratch.members)
}

// dataBuffer is an empty buffer for the output's data, with room for the
// whole record: the caller's, or one of its own.
func (r *planRun) dataBuffer() []byte {
	if r.out.Data == nil {
		return make([]byte, 0, len(r.record)+16)
	}
	return slices.Grow(r.out.Data[:0], len(r.record)+16)
}

// appendJSON encodes the value as astjson.Append encodes OPA's: object
// keys sorted, numbers as written, strings re-escaped. null is left to OPA
// (a null data is refused).
func (v value) appendJSON(dst []byte, scratch *[]member) ([]byte, error) {
	if v.j == nil {
		if _, isNull := v.a.(ast.Null); isNull {
			return nil, errUnsure
		}
		return astjson.Append(dst, v.a)
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
// (bytewise), leaving out the top-level keys in drop. astjson.Plain has
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
