package sls

import (
	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
)

// Component is the sls source type, for a node's registry.
func Component() *component.Spec {
	return component.Source(component.Type[Config]{
		Name:     "sls",
		New:      build,
		Describe: func(c *Config) string { return c.Project + "/" + c.Logstore },
		// What status shows: a part per shard.
		Progress: component.Progress{
			PartLabel:  "shard",
			Records:    "sluice_sls_records_total",
			Bytes:      "sluice_sls_bytes_total",
			Errors:     "sluice_sls_publish_errors_total",
			Lag:        "sluice_sls_lag_seconds",
			Checkpoint: "sluice_sls_checkpoint_timestamp_seconds",
		},
	})
}

func build(c *Config, d component.Deps) (actors.Actor, error) {
	return New(c, Deps{Queue: d.Queue, Logger: d.Logger, Metrics: d.Metrics, NodeName: d.NodeName})
}
