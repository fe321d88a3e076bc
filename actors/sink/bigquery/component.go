package bigquery

import (
	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/queue/batch"
)

// Component is the bigquery sink type, for a node's registry: an output
// that names no sink but a table comes to it.
func Component() *component.Spec {
	takes := func(o *batch.Output) bool { return o.Table != "" }
	return component.Sink(component.Type[Config]{Name: "bigquery", New: func(c *Config, d component.Deps) (actors.Actor, error) {
		return New(c, Deps{Queue: d.Queue, Logger: d.Logger, Metrics: d.Metrics})
	}, Takes: takes})
}
