package queue

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// Configure adds to the embedded server's options before it starts (the
// cluster sets its routes there), and an error from it stops Start.
func TestConfigureAddsToTheServerOptions(t *testing.T) {
	q := startQueue(t, t.TempDir(), func(o *Options) {
		o.Configure = func(so *server.Options) error { so.MaxConn = 77; return nil }
	})
	defer q.Close()
	v, err := q.Server().Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.MaxConn != 77 {
		t.Errorf("max connections %d: Configure was not applied", v.MaxConn)
	}
	if q.clustered {
		t.Error("a server without a route listener counts as clustered")
	}
	refused := errors.New("refused")
	_, err = Start(context.Background(), Options{DataDir: t.TempDir(), Configure: func(*server.Options) error { return refused }})
	if !errors.Is(err, refused) {
		t.Fatalf("Start with a failing Configure: %v", err)
	}
}
