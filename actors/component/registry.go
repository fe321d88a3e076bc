package component

import (
	"fmt"
	"sort"
)

// Registry is the source and sink types a node knows, by config `type`.
// It is a value: a program lists its types once (actors/builtin), a test
// adds its own, and two registries in one process do not meet.
type Registry struct {
	sources, sinks []*Spec
}

// NewRegistry makes a registry of specs (see Add).
func NewRegistry(specs ...*Spec) *Registry {
	r := &Registry{}
	for _, s := range specs {
		r.Add(s)
	}
	return r
}

// Add adds a type. Two types of one kind with one name is a mistake in
// the program, not in a config: it panics, as http.ServeMux.Handle does.
func (r *Registry) Add(s *Spec) {
	list := &r.sources
	if s.sink {
		list = &r.sinks
	}
	for _, o := range *list {
		if o.typ == s.typ {
			panic(fmt.Sprintf("component: two %s types named %q", s.kind(), s.typ))
		}
	}
	*list = append(*list, s)
}

// Source is the source type named typ. A nil registry has no types.
func (r *Registry) Source(typ string) (*Spec, bool) { return find(r.list(false), typ) }

// Sink is the sink type named typ.
func (r *Registry) Sink(typ string) (*Spec, bool) { return find(r.list(true), typ) }

// Sinks are the sink types, in the order they were added: the order in
// which an output that names no sink is offered to them.
func (r *Registry) Sinks() []*Spec { return r.list(true) }

// SourceNames and SinkNames are the type names, sorted.
func (r *Registry) SourceNames() []string { return names(r.list(false)) }
func (r *Registry) SinkNames() []string   { return names(r.list(true)) }

func (r *Registry) list(sinks bool) []*Spec {
	switch {
	case r == nil:
		return nil
	case sinks:
		return r.sinks
	}
	return r.sources
}

func (s *Spec) kind() string {
	if s.sink {
		return "sink"
	}
	return "source"
}

func find(specs []*Spec, typ string) (*Spec, bool) {
	for _, s := range specs {
		if s.typ == typ {
			return s, true
		}
	}
	return nil, false
}

func names(specs []*Spec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.typ
	}
	sort.Strings(out)
	return out
}
