// Package builtin lists the source and sink types this build of sluice
// has. Adding a type is its folder, an import here and a line in Registry.
package builtin

import (
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/actors/fetch/gcs"
	"github.com/sluicehq/sluice/actors/fetch/sls"
	"github.com/sluicehq/sluice/actors/sink/bigquery"
	"github.com/sluicehq/sluice/actors/sink/splunk"
)

// Registry is a new registry of the built-in types. The sinks' order is
// the order an output that names no sink is offered to them.
func Registry() *component.Registry {
	return component.NewRegistry(
		sls.Component(),
		gcs.Component(),
		splunk.Component(),
		bigquery.Component(),
	)
}
