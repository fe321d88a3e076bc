package gcs

import (
	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
)

// Component is the gcs source type, for a node's registry.
func Component() *component.Spec {
	return component.Source(component.Type[Config]{
		Name:     "gcs",
		New:      build,
		Describe: func(c *Config) string { return "projects/" + c.Project + "/subscriptions/" + c.Subscription },
		// What status shows: one part, the subscription; its lag is how long the oldest notification waits.
		Progress: component.Progress{
			Records: "sluice_gcs_records_total",
			Bytes:   "sluice_gcs_record_bytes_total",
			Errors:  "sluice_gcs_parse_errors_total",
			Lag:     "sluice_gcs_oldest_unacked_seconds",
			Oldest:  "sluice_gcs_oldest_unacked_seconds",
		},
	})
}

func build(c *Config, d component.Deps) (actors.Actor, error) {
	return New(c, Deps{Queue: d.Queue, Logger: d.Logger, Metrics: d.Metrics, Policies: d.Policies})
}
