package node

import (
	"context"
	"fmt"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/fetch/gcs"
	"github.com/sluicehq/sluice/actors/fetch/sls"
	"github.com/sluicehq/sluice/actors/sink/bigquery"
	"github.com/sluicehq/sluice/actors/sink/splunk"
	"github.com/sluicehq/sluice/actors/transform"
	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/rego"
)

// KnownTypes is every source and sink type this build of sluice has.
func KnownTypes() Types {
	return Types{
		Sources: map[string]ComponentType{
			"sls": {Decode: sls.DecodeConfig},
			"gcs": {Decode: gcs.DecodeConfig},
		},
		Sinks: map[string]ComponentType{
			"splunk_hec": {Decode: splunk.DecodeConfig},
			"bigquery":   {Decode: bigquery.DecodeConfig},
		},
	}
}

// BuildComponents adds the actors of the node's config: the sources, the
// transform and the sinks.
func BuildComponents(ctx context.Context, n *Node) error {
	if err := buildTransform(n); err != nil {
		return err
	}
	for _, c := range n.Config.Sinks {
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"sink": c.Name}, n.Registry)
		switch cfg := c.Decoded.(type) {
		case *splunk.Config:
			s, err := splunk.New(cfg, splunk.Deps{Queue: n.Queue, Logger: n.Log, Metrics: reg})
			if err != nil {
				return err
			}
			n.Runtime.Add(actors.StageSink, "sink/"+c.Name, s)
			n.Queue.DeclareDeadLetterer("sink", c.Name)
		case *bigquery.Config:
			s, err := bigquery.New(cfg, bigquery.Deps{Queue: n.Queue, Logger: n.Log, Metrics: reg})
			if err != nil {
				return err
			}
			n.Runtime.Add(actors.StageSink, "sink/"+c.Name, s)
			n.Queue.DeclareDeadLetterer("sink", c.Name)
		default:
			return fmt.Errorf("sink %q: type %q has no actor", c.Name, c.Type)
		}
	}
	for _, c := range n.Config.Sources {
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"source": c.Name}, n.Registry)
		switch cfg := c.Decoded.(type) {
		case *sls.Config:
			f, err := sls.New(cfg, sls.Deps{Queue: n.Queue, Logger: n.Log, Metrics: reg, NodeName: n.Config.Node.Name})
			if err != nil {
				return err
			}
			n.Runtime.Add(actors.StageFetch, "sls/"+c.Name, f)
			n.Queue.DeclareDeadLetterer("fetch", c.Name)
		case *gcs.Config:
			f, err := gcs.New(cfg, gcs.Deps{Queue: n.Queue, Logger: n.Log, Metrics: reg, Policies: n.Policies})
			if err != nil {
				return err
			}
			n.Runtime.Add(actors.StageFetch, "gcs/"+c.Name, f)
			n.Queue.DeclareDeadLetterer("fetch", c.Name)
		default:
			return fmt.Errorf("source %q: type %q has no actor", c.Name, c.Type)
		}
	}
	return nil
}

// buildTransform loads the policies (a bad policy stops startup with the
// file and line) and adds the transform and the policy watcher.
func buildTransform(n *Node) error {
	cfg := n.Config
	if cfg.Policies.Dir == "" {
		return nil
	}
	eng, err := rego.Load(cfg.Policies.Dir, rego.Options{EvalTimeout: cfg.TransformConfig.EvalTimeout.D(), FullEval: cfg.Policies.FullEval, Logger: n.Log, Metrics: n.Registry})
	if err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	n.Policies = eng
	n.AddReadyCheck("policies", eng.Ready)
	n.Log.Info("policies loaded", "dir", cfg.Policies.Dir, "version", eng.Status().Version, "schemas", eng.Schemas())
	sinks := map[string]string{}
	for _, s := range cfg.Sinks {
		sinks[s.Name] = s.Type
	}
	t, err := transform.New(cfg.TransformConfig, transform.Deps{Queue: n.Queue, Logger: n.Log, Metrics: n.Registry, Engine: eng, Sinks: sinks})
	if err != nil {
		return err
	}
	n.Runtime.Add(actors.StageTransform, "transform", t)
	n.Queue.DeclareDeadLetterer("transform", "transform")
	if *cfg.Policies.Watch {
		n.Runtime.Add(actors.StageTransform, "policy-watch", actors.ActorFunc(func(ctx context.Context, _ *actors.Health) error {
			return eng.Watch(ctx)
		}))
	}
	return nil
}

// components describes configured sources or sinks for the operations API.
func (n *Node) components(cs []Component) []ops.Component {
	out := make([]ops.Component, len(cs))
	for i, c := range cs {
		out[i] = ops.Component{Name: c.Name, Type: c.Type}
		switch cfg := c.Decoded.(type) {
		case *sls.Config:
			out[i].Detail = cfg.Project + "/" + cfg.Logstore
		case *gcs.Config:
			out[i].Detail = "projects/" + cfg.Project + "/subscriptions/" + cfg.Subscription
		case *splunk.Config:
			if u, err := url.Parse(cfg.URL); err == nil {
				u.User = nil // never show credentials someone put in the URL
				out[i].Detail = u.String()
			}
		}
	}
	return out
}
