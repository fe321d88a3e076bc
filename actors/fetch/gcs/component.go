package gcs

import (
	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
)

// Component is the gcs source type, for a node's registry. Status shows
// one part, the subscription; its lag is how long the oldest
// notification waits.
func Component() *component.Spec {
	describe := func(c *Config) string { return "projects/" + c.Project + "/subscriptions/" + c.Subscription }
	progress := component.Progress{Records: "sluice_gcs_records_total", Bytes: "sluice_gcs_record_bytes_total",
		Errors: "sluice_gcs_parse_errors_total", Lag: "sluice_gcs_oldest_unacked_seconds", Oldest: "sluice_gcs_oldest_unacked_seconds"}
	return component.Source(component.Type[Config]{Name: "gcs", Describe: describe, Progress: progress,
		New: func(c *Config, d component.Deps) (actors.Actor, error) {
			return New(c, Deps{Queue: d.Queue, Logger: d.Logger, Metrics: d.Metrics, Policies: d.Policies})
		}})
}
