package rego

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/sluicehq/sluice/queue/batch"
	"github.com/sluicehq/sluice/rego/internal/astjson"
	"github.com/sluicehq/sluice/rego/plan"
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
			o.Data, err = astjson.Append(nil, val.Value)
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

// input parses a record at most once: a plan (nil: none) answers with its
// outputs, often without parsing it, or the record becomes OPA's input.
func (e *Engine) input(ctx context.Context, p *plan.Plan, record []byte, data *[]byte) (ast.Value, []Output, error) {
	s, _ := e.records.Get().(*recordScratch)
	if s == nil {
		s = new(recordScratch)
	}
	s.record.Reset(record)
	defer func() {
		s.record.Reset(nil)                             // nor the record
		s.out = plan.Output{Strings: s.out.Strings[:0]} // the pool keeps no caller's buffer
		e.records.Put(s)
	}()
	if p != nil && !e.opts.FullEval {
		if out, ok := e.runPlan(ctx, p, s, data); ok {
			e.planned.Inc()
			return nil, out, nil
		}
	}
	e.evaluated.Inc()
	v, err := s.record.Parse()
	if err != nil {
		return nil, nil, err
	}
	input, err := astjson.From(v)
	return input, nil, err
}

// recordScratch is what evaluating one record needs, reused from record to
// record: the record, parsed once by whichever path needs it, and the
// plan's output.
type recordScratch struct {
	record plan.Record
	out    plan.Output
}

// runPlan runs a schema's plan and turns its output into an Output, with
// the checks OPA's outputs get; ok is false when the plan is unsure or the
// output would be refused: OPA then evaluates the record and words the
// error.
func (e *Engine) runPlan(ctx context.Context, p *plan.Plan, s *recordScratch, data *[]byte) (_ []Output, ok bool) {
	s.out.Data = nil // a buffer of its own for each output
	if data != nil {
		s.out.Data = (*data)[:0]
	}
	produced, ok := p.Run(ctx, &s.record, &s.out)
	if data != nil && s.out.Data != nil {
		*data = s.out.Data[:0] // kept, grown, for the next record's data
	}
	if !ok || !produced {
		return nil, ok
	}
	var o Output
	o.Timestamp, o.Data, o.Fields = s.out.Timestamp, s.out.Data, s.out.Fields
	for _, f := range s.out.Strings {
		dst := o.stringField(f.Key)
		if dst == nil {
			return nil, false // an unknown field
		}
		*dst = f.Value
	}
	if o.complete() != nil {
		return nil, false
	}
	return []Output{o}, true
}

// stringField is where an output's string field goes; nil for the others.
func (o *Output) stringField(name string) *string {
	if name == "sink" {
		return &o.Sink
	}
	return o.StringField(name)
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
	return astjson.From(v)
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
