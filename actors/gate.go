package actors

import (
	"context"
)

// Gate says when actors may take work. Open waits until they may (or until
// ctx ends) and returns a context that ends when they no longer may; the
// caller calls cancel when done with it. A node out of contact with its
// cluster's quorum closes its gate (cluster.QuorumWatch), so its sources and
// sinks hand their work to the nodes that can store it.
type Gate interface {
	Open(ctx context.Context) (context.Context, context.CancelFunc)
}

// Gate makes the actors of stages added from now on run only while g is
// open. A paused actor's Run sees its context end, as at a node stop, and
// so gives back what it holds the way it does then; it is run again when
// the gate opens. Pausing is not a failure: no restart is counted.
func (r *Runtime) Gate(g Gate, stages ...Stage) {
	for _, s := range stages {
		r.gates[s] = g
	}
}

// gated runs an actor under a gate.
type gated struct {
	g Gate
	a Actor
}

func (a gated) Run(ctx context.Context, h *Health) error {
	for {
		wctx, release := a.g.Open(ctx)
		if ctx.Err() != nil {
			release()
			return nil
		}
		h.setState(StateRunning, "")
		err := a.a.Run(wctx, h)
		paused := wctx.Err() != nil && ctx.Err() == nil
		release()
		if !paused {
			return err
		}
		h.setState(StatePaused, "")
	}
}

// StatePaused: the actor's gate is closed (the node lost its cluster's
// quorum); it runs again when the gate opens.
const StatePaused State = "paused"
