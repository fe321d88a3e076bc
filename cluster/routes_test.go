package cluster

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// Whoever reaches a route port joins as a peer: off loopback a node
// opens one only with TLS, or when told by name to run without.
func TestRoutesOffLoopbackNeedTLSOrInsecure(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:6222", ":6222", "10.0.0.11:6222"} {
		err := (Options{Name: "test", Listen: listen}).apply(&server.Options{})
		if err == nil || !strings.Contains(err.Error(), "routes need TLS") {
			t.Errorf("route listener %s without TLS: err = %v, want one saying routes need TLS", listen, err)
		}
		if err := (Options{Name: "test", Listen: listen, Insecure: true}).apply(&server.Options{}); err != nil {
			t.Errorf("route listener %s, Insecure: %v", listen, err)
		}
	}
	if err := (Options{Name: "test", Listen: "127.0.0.1:6222"}).apply(&server.Options{}); err != nil {
		t.Errorf("loopback route listener without TLS: %v", err)
	}
}
