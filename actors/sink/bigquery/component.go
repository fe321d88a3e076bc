package bigquery

import (
	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/queue/batch"
)

// Component is the bigquery sink type, for a node's registry.
func Component() *component.Spec {
	return component.Sink(component.Type[Config]{
		Name:  "bigquery",
		New:   build,
		Takes: takes,
	})
}

func build(c *Config, d component.Deps) (actors.Actor, error) {
	return New(c, Deps{Queue: d.Queue, Logger: d.Logger, Metrics: d.Metrics})
}

// takes: an output that names no sink but a table comes to BigQuery.
func takes(o *batch.Output) bool { return o.Table != "" }
