package rego

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/jsonx"
	"github.com/sluicehq/sluice/queue/batch"
)

// Source is one way to read a source event: an element of data.event.src.
type Source struct {
	Parser   string `json:"parser"`
	Compress string `json:"compress"`
	Schema   string `json:"schema"`
}

// Output is one element of data.schema.<name>.log: a record for one sink.
// Sink is empty when the policy names none (the transform picks by kind).
type Output struct {
	Sink string
	batch.Output
}

// ErrTimeout is returned (wrapped) when an evaluation hits the time limit.
var ErrTimeout = errors.New("evaluation exceeded the time limit")

// ErrNoSchema is returned for a schema that no policy defines.
var ErrNoSchema = errors.New("no such schema policy")

// EventSources evaluates data.event.src for a source event (JSON).
func (e *Engine) EventSources(ctx context.Context, event []byte) ([]Source, error) {
	set := e.current()
	if set.event == nil {
		return nil, errors.New("no event policy (package event with a src rule)")
	}
	key, cacheable := set.events.key(&e.parsers, event)
	if cacheable {
		if srcs, ok := set.events.get(key); ok {
			return srcs, nil
		}
	}
	srcs, err := e.eventSources(ctx, set, event)
	if err == nil && cacheable {
		set.events.put(key, srcs)
	}
	return srcs, err
}

func (e *Engine) eventSources(ctx context.Context, set *policySet, event []byte) ([]Source, error) {
	input, err := e.parse(event)
	if err != nil {
		return nil, fmt.Errorf("event input: %w", err)
	}
	rs, err := e.eval(ctx, set, set.event, input)
	if err != nil {
		return nil, fmt.Errorf("policy event, rule src: %w", err)
	}
	var out []Source
	for i, v := range rs {
		obj, ok := v.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("policy event, rule src, element %d: want an object, got %s", i, ast.ValueName(v))
		}
		var s Source
		for field, dst := range map[string]*string{"parser": &s.Parser, "compress": &s.Compress, "schema": &s.Schema} {
			if t := obj.Get(ast.StringTerm(field)); t != nil {
				str, ok := t.Value.(ast.String)
				if !ok {
					return nil, fmt.Errorf("policy event, rule src, element %d, field %s: want a string", i, field)
				}
				*dst = string(str)
			}
		}
		if s.Schema == "" {
			return nil, fmt.Errorf("policy event, rule src, element %d, field schema: required", i)
		}
		out = append(out, s)
	}
	return out, nil
}

// Outputs evaluates data.schema.<schema>.log for one record (JSON) and
// validates every output. No output means the policy drops the record.
func (e *Engine) Outputs(ctx context.Context, schema string, record []byte) ([]Output, error) {
	return e.OutputsInto(ctx, schema, record, nil)
}

// OutputsInto is Outputs, but the data of an output that a plan makes is
// written into *data (grown as needed), which the next call overwrites: for
// a caller that copies each output away at once, as the transform does, so
// that the data needs no buffer of its own. A nil data is Outputs.
func (e *Engine) OutputsInto(ctx context.Context, schema string, record []byte, data *[]byte) ([]Output, error) {
	set := e.current()
	q, ok := set.schemas[schema]
	if !ok {
		return nil, fmt.Errorf("schema %q: %w (have: %v)", schema, ErrNoSchema, set.schemaNames())
	}
	input, out, err := e.input(ctx, set.plans[schema], record, data)
	if err != nil {
		return nil, fmt.Errorf("record is not JSON: %w", err)
	}
	if input == nil {
		return out, nil // the plan answered
	}
	rs, err := e.eval(ctx, set, q, input)
	if err != nil {
		return nil, fmt.Errorf("policy schema.%s, rule log: %w", schema, err)
	}
	out = make([]Output, 0, len(rs))
	for i, v := range rs {
		o, err := toOutput(v)
		if err != nil {
			return nil, fmt.Errorf("policy schema.%s, rule log, output %d: %w", schema, i, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// eval runs a compiled query under the per-record time limit and returns
// the elements of the resulting set (or array).
func (e *Engine) eval(ctx context.Context, set *policySet, body ast.Body, input ast.Value) (_ []ast.Value, err error) {
	// OPA panics on some values it cannot handle (a number beyond
	// big.Float's range in arithmetic): that is this record's fault, and
	// must not take the node down with it.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the policy cannot evaluate this record: OPA: %v", r)
		}
	}()
	txn, err := set.store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer set.store.Abort(ctx, txn)
	cancel := topdown.NewCancel()
	timer := time.AfterFunc(e.opts.EvalTimeout, cancel.Cancel)
	rs, err := topdown.NewQuery(body).
		WithCompiler(set.compiler).WithStore(set.store).WithTransaction(txn).
		WithInput(ast.NewTerm(input)).WithCancel(cancel).WithStrictBuiltinErrors(true).
		Run(ctx)
	timer.Stop()
	if err != nil {
		if cancel.Cancelled() {
			return nil, fmt.Errorf("%w of %s", ErrTimeout, e.opts.EvalTimeout)
		}
		return nil, err
	}
	if len(rs) == 0 {
		return nil, nil // rule undefined: nothing produced
	}
	t := rs[0][ast.Var(resultVar)]
	if t == nil {
		return nil, nil
	}
	var out []ast.Value
	switch c := t.Value.(type) {
	case ast.Set:
		c.Foreach(func(t *ast.Term) { out = append(out, t.Value) })
	case *ast.Array:
		c.Foreach(func(t *ast.Term) { out = append(out, t.Value) })
	default:
		return nil, fmt.Errorf("want a set, got %s", ast.ValueName(t.Value))
	}
	return out, nil
}

var partitions = map[string]bool{"": true, "hour": true, "day": true, "month": true, "year": true}

// toOutput checks one output and turns it into Go, naming the bad field.
func toOutput(v ast.Value) (Output, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Output{}, fmt.Errorf("want an object, got %s", ast.ValueName(v))
	}
	var o Output
	var err error
	obj.Foreach(func(k, val *ast.Term) {
		if err != nil {
			return
		}
		key, ok := k.Value.(ast.String)
		if !ok {
			err = fmt.Errorf("key %s: want a string", k)
			return
		}
		name := string(key)
		if dst := o.stringField(name); dst != nil {
			s, ok := val.Value.(ast.String)
			if !ok {
				err = fmt.Errorf("field %s: want a string, got %s", name, ast.ValueName(val.Value))
				return
			}
			*dst = string(s)
			return
		}
		switch name {
		case "timestamp":
			n, ok := val.Value.(ast.Number)
			if !ok {
				err = fmt.Errorf("field timestamp: want a number (epoch seconds), got %s", ast.ValueName(val.Value))
				return
			}
			f, _ := n.Float64()
			o.Timestamp = f
		case "data":
			if _, isNull := val.Value.(ast.Null); isNull {
				return
			}
			o.Data, err = toJSON(val.Value)
			if err != nil {
				err = fmt.Errorf("field data: %w", err)
			}
		case "fields":
			fo, ok := val.Value.(ast.Object)
			if !ok {
				err = fmt.Errorf("field fields: want an object, got %s", ast.ValueName(val.Value))
				return
			}
			var x any
			if x, err = ast.JSON(fo); err == nil {
				o.Fields, _ = x.(map[string]any)
			}
		default:
			err = fmt.Errorf("unknown field %s (known: id, timestamp, data, sink, index, sourcetype, source, host, fields, dataset, table, partition)", name)
		}
	})
	if err == nil {
		err = o.complete()
	}
	if err != nil {
		return Output{}, err
	}
	return o, nil
}

// complete checks what every output needs and fills in a missing id: as in
// Swarm, a stable hash of the data, so a redelivered record gets the same.
func (o *Output) complete() error {
	switch {
	case o.Timestamp <= 0:
		return errors.New("field timestamp: required, epoch seconds greater than zero")
	case o.Data == nil:
		return errors.New("field data: required")
	case !partitions[o.Partition]:
		return fmt.Errorf("field partition: %q, want hour, day, month or year", o.Partition)
	case o.Table == "" && o.Dataset != "":
		return errors.New("field table: required when dataset is set")
	}
	if o.ID == "" {
		sum := sha256.Sum256(o.Data)
		o.ID = hex.EncodeToString(sum[:16])
	}
	return nil
}

// toJSON encodes a Rego value as JSON, by hand: numbers keep their text,
// object keys their (sorted) order.
func toJSON(v ast.Value) (json.RawMessage, error) {
	return appendJSON(nil, v)
}

func appendJSON(dst []byte, v ast.Value) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case ast.Null:
		return append(dst, "null"...), nil
	case ast.Boolean:
		return strconv.AppendBool(dst, bool(x)), nil
	case ast.Number:
		return append(dst, x...), nil
	case ast.String:
		return jsonx.AppendString(dst, string(x)), nil
	case *ast.Array:
		dst = append(dst, '[')
		for i := 0; i < x.Len() && err == nil; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst, err = appendJSON(dst, x.Elem(i).Value)
		}
		return append(dst, ']'), err
	case ast.Set:
		dst = append(dst, '[')
		i := 0
		x.Foreach(func(t *ast.Term) {
			if err != nil {
				return
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			i++
			dst, err = appendJSON(dst, t.Value)
		})
		return append(dst, ']'), err
	case ast.Object:
		dst = append(dst, '{')
		i := 0
		for _, k := range x.Keys() {
			key, ok := k.Value.(ast.String)
			if !ok {
				return dst, fmt.Errorf("object key %s is not a string", k)
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			i++
			dst = jsonx.AppendString(dst, string(key))
			dst = append(dst, ':')
			if dst, err = appendJSON(dst, x.Get(k).Value); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	}
	return dst, fmt.Errorf("%s cannot be encoded as JSON", ast.ValueName(v))
}

// input parses a record at most once: a plan (nil: none) answers with its
// outputs, often without parsing it, or the record becomes OPA's input.
func (e *Engine) input(ctx context.Context, p *plan, record []byte, data *[]byte) (ast.Value, []Output, error) {
	lazy, _ := e.records.Get().(*lazyRecord)
	if lazy == nil {
		lazy = &lazyRecord{parser: new(fastjson.Parser)}
	}
	*lazy = lazyRecord{parser: lazy.parser, text: record}
	defer e.records.Put(lazy)
	if p != nil && !e.opts.FullEval {
		if out, ok := p.run(ctx, lazy, data); ok {
			e.planned.Inc()
			return nil, out, nil
		}
	}
	e.evaluated.Inc()
	v, err := lazy.parse()
	if err != nil {
		return nil, nil, err
	}
	input, err := fromFastJSON(v)
	return input, nil, err
}

// lazyRecord is a record parsed when first needed, then kept.
type lazyRecord struct {
	parser *fastjson.Parser
	text   []byte
	parsed bool
	v      *fastjson.Value
	err    error
}

func (l *lazyRecord) parse() (*fastjson.Value, error) {
	if !l.parsed {
		l.v, l.err = l.parser.ParseBytes(l.text)
		l.parsed = true
	}
	return l.v, l.err
}

// parse turns JSON into a Rego value directly, without map[string]any:
// numbers keep their text, so nothing is lost and little is allocated.
func (e *Engine) parse(data []byte) (ast.Value, error) {
	p := e.parsers.Get()
	defer e.parsers.Put(p)
	v, err := p.ParseBytes(data)
	if err != nil {
		return nil, err
	}
	return fromFastJSON(v)
}

// fromFastJSON converts a parsed value. fastjson scans numbers loosely
// ("7+0", "nan" pass), and OPA panics on arithmetic with such a number, so
// each number's text is checked against JSON's grammar here.
func fromFastJSON(v *fastjson.Value) (ast.Value, error) {
	var err error
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		terms := make([][2]*ast.Term, 0, o.Len())
		o.Visit(func(k []byte, v *fastjson.Value) {
			if err != nil {
				return
			}
			var x ast.Value
			if x, err = fromFastJSON(v); err == nil {
				terms = append(terms, [2]*ast.Term{ast.StringTerm(string(k)), ast.NewTerm(x)})
			}
		})
		if err != nil {
			return nil, err
		}
		return ast.NewObject(terms...), nil
	case fastjson.TypeArray:
		a, _ := v.Array()
		terms := make([]*ast.Term, len(a))
		for i, x := range a {
			y, err := fromFastJSON(x)
			if err != nil {
				return nil, err
			}
			terms[i] = ast.NewTerm(y)
		}
		return ast.NewArray(terms...), nil
	case fastjson.TypeString:
		return ast.String(v.GetStringBytes()), nil
	case fastjson.TypeNumber:
		n := v.String()
		if !jsonx.ValidNumber(n) {
			return nil, fmt.Errorf("invalid number %q", n)
		}
		if !jsonx.TameNumber(n) {
			return nil, fmt.Errorf("number %q: exponent beyond ±1000, which policies cannot compute with in bounded time", n)
		}
		return ast.Number(n), nil
	case fastjson.TypeTrue:
		return ast.Boolean(true), nil
	case fastjson.TypeFalse:
		return ast.Boolean(false), nil
	}
	return ast.Null{}, nil
}

func (s *policySet) fastPath(off bool) map[string]string {
	m := make(map[string]string, len(s.schemas))
	for name := range s.schemas {
		switch {
		case off:
			m[name] = "off (full evaluation configured)"
		case s.plans[name] != nil:
			m[name] = "plan"
		default:
			m[name] = s.noPlans[name]
		}
	}
	return m
}

func (s *policySet) schemaNames() []string {
	names := make([]string, 0, len(s.schemas))
	for n := range s.schemas {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
