package node

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/sink/splunk"
)

// KnownTypes is every source and sink type this build of sluice has.
func KnownTypes() Types {
	return Types{
		Sources: map[string]ComponentType{},
		Sinks: map[string]ComponentType{
			"splunk_hec": {Decode: splunk.DecodeConfig},
		},
	}
}

// BuildComponents adds the actors of the node's config: the sources, the
// transform and the sinks.
func BuildComponents(ctx context.Context, n *Node) error {
	for _, c := range n.Config.Sinks {
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"sink": c.Name}, n.Registry)
		switch cfg := c.Decoded.(type) {
		case *splunk.Config:
			s, err := splunk.New(cfg, splunk.Deps{Queue: n.Queue, Logger: n.Log, Metrics: reg})
			if err != nil {
				return err
			}
			n.Runtime.Add(actors.StageSink, "sink/"+c.Name, s)
		default:
			return fmt.Errorf("sink %q: type %q has no actor", c.Name, c.Type)
		}
	}
	return nil
}
