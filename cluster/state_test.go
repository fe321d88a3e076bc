package cluster

import (
	"context"
	"testing"
)

// A single node has no Cluster: what node and ops read of it says so
// (nil), instead of each caller checking first.
func TestNilClusterIsASingleNode(t *testing.T) {
	var c *Cluster
	if c.Quorum() != nil || c.State(context.Background()) != nil || c.StateFrom(nil) != nil {
		t.Fatal("a nil Cluster reports a quorum watch or a state")
	}
}
