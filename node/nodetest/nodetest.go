// Package nodetest runs a node inside a test: in the background, stopped
// when the test ends. Only tests import it.
package nodetest

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/node"
)

// Start builds a node from cfg with opts and runs it until the test ends;
// it returns once the node has started. A node that fails to build or to
// start, or has not started within 2 minutes, fails the test; an error
// its run returns later is reported when the test ends.
func Start(t testing.TB, cfg *node.Config, opts node.Options) *node.Node {
	t.Helper()
	n, err := node.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	stopped := make(chan struct{})
	go func() {
		runErr = n.Run(ctx)
		close(stopped)
	}()
	failed := false // the run's error is reported already
	t.Cleanup(func() {
		cancel()
		<-stopped
		if runErr != nil && !failed {
			t.Error(runErr)
		}
	})
	select {
	case <-n.Started():
	case <-stopped:
		failed = true
		t.Fatal(runErr)
	case <-time.After(2 * time.Minute):
		t.Fatal("node not started within 2m")
	}
	return n
}
