package component

import (
	"fmt"
	"sort"

	"github.com/sluicehq/sluice/queue/batch"
)

// Router picks the sink of each policy output: the one it names, else the
// only configured sink of the first type (in registry order) that takes it.
type Router struct {
	sinks  map[string]string // configured sink name → type
	byType []typeSinks       // every sink type the registry has, in its order
}

type typeSinks struct {
	spec  *Spec
	names []string // configured sinks of the type, sorted
}

// NewRouter makes the router of the configured sinks (name → type) over
// the registry's sink types.
func NewRouter(r *Registry, sinks map[string]string) *Router {
	rt := &Router{sinks: sinks}
	for _, s := range r.Sinks() {
		ts := typeSinks{spec: s}
		for name, typ := range sinks {
			if typ == s.typ {
				ts.names = append(ts.names, name)
			}
		}
		sort.Strings(ts.names)
		rt.byType = append(rt.byType, ts)
	}
	return rt
}

// SinkFor is the sink of an output whose sink field is sink (maybe empty).
// Errors name the field, as a policy author reads them in the DLQ.
func (rt *Router) SinkFor(sink string, o *batch.Output) (string, error) {
	if sink != "" {
		if _, ok := rt.sinks[sink]; !ok {
			return "", fmt.Errorf("field sink: no sink named %q is configured", sink)
		}
		return sink, nil
	}
	for _, t := range rt.byType {
		if !t.spec.Takes(o) {
			continue
		}
		switch len(t.names) {
		case 1:
			return t.names[0], nil
		case 0:
			return "", fmt.Errorf("field sink: not set, and no %s sink is configured", t.spec.typ)
		default:
			return "", fmt.Errorf("field sink: not set, and there are several %s sinks (%v): name one", t.spec.typ, t.names)
		}
	}
	return "", fmt.Errorf("field sink: not set, and no sink type takes this output: name one")
}
