// Package component is the contract between the node and its source and
// sink types: each type's package describes itself once in a Spec (how its
// config decodes, how its actor is built, what status says of it, which
// policy outputs it takes), and a Registry lists the specs a build has.
// Nothing outside a type's folder names the type; the node, the transform
// and the commands ask the registry.
package component

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
	"github.com/sluicehq/sluice/rego"
)

// Deps are what the node gives a component's constructor.
type Deps struct {
	Queue    *queue.Queue
	Logger   *slog.Logger
	Metrics  prometheus.Registerer // already labelled source=<name> or sink=<name>
	NodeName string
	Policies *rego.Engine // nil without policies
}

// Type is what a source or sink package says of its type; Source and
// Sink turn it into a Spec. C is the type's config: DecodeStrict fills it
// from the component's YAML (name and type included), then its
// SetDefaults and Validate run, Validate naming the field at fault.
type Type[C any] struct {
	// Name is the config's `type:`.
	Name string
	// New builds the actor from a decoded config.
	New func(cfg *C, d Deps) (actors.Actor, error)
	// Describe is the one line `status` shows: where it reads or writes,
	// never a secret. Optional.
	Describe func(cfg *C) string
	// Takes says, for a sink type, whether a policy output that names no
	// sink goes to the one sink of this type. Optional: without it a sink
	// gets only the outputs that name it.
	Takes func(o *batch.Output) bool
	// Progress says how status reads a source's progress; optional.
	Progress Progress
}

// Progress names the metrics a source reports its progress with, so that
// status can show it without knowing the type. Empty names are not shown.
type Progress struct {
	// PartLabel: one part per value of this label (an SLS shard), its ID
	// PartLabel + " " + value; empty: one part, its ID the description.
	PartLabel  string
	Records    string // counter of records read
	Bytes      string // counter of bytes read
	Errors     string // counter of errors
	Lag        string // gauge, seconds behind the source
	Oldest     string // gauge, seconds the oldest unacknowledged unit waits
	Checkpoint string // gauge, Unix time of the last saved checkpoint
}

// Spec is one source or sink type, as the node uses it.
type Spec struct {
	typ      string
	sink     bool
	decode   func(n *yaml.Node) (any, error)
	build    func(cfg any, d Deps) (actors.Actor, error)
	describe func(cfg any) string
	takes    func(o *batch.Output) bool
	progress Progress
}

// checked is a config that fills in its defaults and checks itself.
type checked[C any] interface {
	*C
	SetDefaults()
	Validate() error
}

// Source makes the spec of a source type.
func Source[C any, P checked[C]](t Type[C]) *Spec { return newSpec[C, P](t, false) }

// Sink makes the spec of a sink type.
func Sink[C any, P checked[C]](t Type[C]) *Spec { return newSpec[C, P](t, true) }

func newSpec[C any, P checked[C]](t Type[C], sink bool) *Spec {
	s := &Spec{typ: t.Name, sink: sink, takes: t.Takes, progress: t.Progress}
	s.decode = func(n *yaml.Node) (any, error) { return Decode[C, P](n) }
	s.build = func(cfg any, d Deps) (actors.Actor, error) {
		c, ok := cfg.(*C)
		if !ok {
			return nil, fmt.Errorf("type %s: config is a %T, not a %T", t.Name, cfg, c)
		}
		return t.New(c, d)
	}
	s.describe = func(cfg any) string {
		if c, ok := cfg.(*C); ok && t.Describe != nil {
			return t.Describe(c)
		}
		return ""
	}
	return s
}

// Decode decodes a component's YAML strictly into a C, fills in its
// defaults and validates it: what every source and sink does with its
// section. Errors name the field relative to n.
func Decode[C any, P checked[C]](n *yaml.Node) (*C, error) {
	c := P(new(C))
	if err := conf.DecodeStrict(n, "", c); err != nil {
		return nil, err
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Type is the config's `type:` of this spec.
func (s *Spec) Type() string { return s.typ }

// IsSink says whether this is a sink type (else a source type).
func (s *Spec) IsSink() bool { return s.sink }

// Decode decodes, completes and validates a component's YAML into the
// type's config, for Build.
func (s *Spec) Decode(n *yaml.Node) (any, error) { return s.decode(n) }

// Build makes the actor of a config Decode returned.
func (s *Spec) Build(cfg any, d Deps) (actors.Actor, error) { return s.build(cfg, d) }

// Describe is the one line status shows of a config Decode returned.
func (s *Spec) Describe(cfg any) string { return s.describe(cfg) }

// Takes says whether an output that names no sink goes to this type's sink.
func (s *Spec) Takes(o *batch.Output) bool { return s.takes != nil && s.takes(o) }

// Progress names the metrics of a source's progress.
func (s *Spec) Progress() Progress { return s.progress }
