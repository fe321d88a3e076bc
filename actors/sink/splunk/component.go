package splunk

import (
	"net/url"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/queue/batch"
)

// Component is the splunk_hec sink type, for a node's registry.
func Component() *component.Spec {
	return component.Sink(component.Type[Config]{
		Name:     "splunk_hec",
		New:      build,
		Describe: describe,
		Takes:    takes,
	})
}

func build(c *Config, d component.Deps) (actors.Actor, error) {
	return New(c, Deps{Queue: d.Queue, Logger: d.Logger, Metrics: d.Metrics})
}

// describe is the HEC URL without credentials someone put in it.
func describe(c *Config) string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}

// takes: an output that names no sink and no table comes to Splunk.
func takes(o *batch.Output) bool { return o.Table == "" }
