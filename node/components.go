package node

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/actors/transform"
	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/rego"
)

// BuildComponents adds the actors of the node's config: the sources, the
// transform and the sinks, each built by the type Load found for it.
func BuildComponents(ctx context.Context, n *Node) error {
	if err := buildTransform(n); err != nil {
		return err
	}
	if err := n.addComponents("sink", n.Config.Sinks); err != nil {
		return err
	}
	return n.addComponents("source", n.Config.Sources)
}

// addComponents builds each source or sink (kind) and adds its actor to
// its stage; its DLQ subject is declared for the operations API.
func (n *Node) addComponents(kind string, comps []Component) error {
	stage, dlqStage := actors.StageSink, queue.StageSink
	if kind == "source" {
		stage, dlqStage = actors.StageFetch, queue.StageFetch
	}
	for _, c := range comps {
		if c.Spec == nil {
			return fmt.Errorf("%s %q: type %q has no actor (the config was not loaded with a registry)", kind, c.Name, c.Type)
		}
		a, err := c.Spec.Build(c.Decoded, component.Deps{Queue: n.Queue, Logger: n.Log, NodeName: n.Config.Node.Name, Policies: n.Policies,
			Metrics: prometheus.WrapRegistererWith(prometheus.Labels{kind: c.Name}, n.Registry)})
		if err != nil {
			return err
		}
		name := "sink/" + c.Name
		if kind == "source" {
			name = c.Type + "/" + c.Name
		}
		n.Runtime.Add(stage, name, a)
		n.Queue.DeclareDeadLetterer(dlqStage, c.Name)
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
	t, err := transform.New(cfg.TransformConfig, transform.Deps{Queue: n.Queue, Logger: n.Log, Metrics: n.Registry, Engine: eng, Sinks: sinks, Types: cfg.types})
	if err != nil {
		return err
	}
	n.Runtime.Add(actors.StageTransform, "transform", t)
	n.Queue.DeclareDeadLetterer(queue.StageTransform, "transform")
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
		if c.Spec != nil {
			out[i].Detail = c.Spec.Describe(c.Decoded)
			out[i].Progress = c.Spec.Progress()
		}
	}
	return out
}
