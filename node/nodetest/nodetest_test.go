package nodetest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/node/nodetest"
)

// recorder is a testing.TB that keeps what a helper reports and its
// cleanups, so a test can see how the helper fails.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recorder) Error(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprint(args...))
}

func (r *recorder) Fatal(args ...any) {
	r.Error(args...)
	runtime.Goexit()
}

// A node whose run fails before it starts fails the test once, and the
// test's cleanup returns.
func TestStartFailsATestWhoseNodeDoesNotStart(t *testing.T) {
	cfg, err := node.Parse([]byte(fmt.Sprintf("node: {name: test, data_dir: %q, admin_listen: \"127.0.0.1:0\"}\nqueue: {max_bytes: 64MiB}\n", t.TempDir())),
		builtin.Registry(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("components: boom")
	r := &recorder{TB: t}
	started := make(chan struct{})
	go func() {
		defer close(started)
		nodetest.Start(r, cfg, node.Options{Components: func(context.Context, *node.Node) error { return boom }})
	}()
	<-started
	cleaned := make(chan struct{})
	go func() {
		defer close(cleaned)
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
	}()
	select {
	case <-cleaned:
	case <-time.After(time.Minute):
		t.Fatal("the test's cleanup hangs after its node failed to start")
	}
	if len(r.errs) != 1 || !strings.HasSuffix(r.errs[0], boom.Error()) {
		t.Errorf("reported %q, want the node's error once", r.errs)
	}
}
