package queue

import (
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluicehq/sluice/internal/conf"
)

// ClusterTLS is mutual TLS for routes: each node presents CertFile/KeyFile and
// accepts only peers whose certificate CAFile signed.
type ClusterTLS struct {
	CertFile, KeyFile, CAFile string
}

// applyCluster sets the route listener and the routes to every peer.
func applyCluster(o *server.Options, c *ClusterOptions) error {
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("queue: cluster listen %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("queue: cluster listen %q: bad port", c.Listen)
	}
	// Whoever reaches a route port joins as a peer and can read or purge
	// every stream: off loopback, only mutual TLS lets a peer in.
	if c.TLS == nil && !c.Insecure && !conf.LoopbackHost(host) {
		return fmt.Errorf("queue: cluster listen %s is not a loopback address: routes need TLS (or Insecure)", c.Listen)
	}
	o.Cluster.Name = c.Name
	if c.TLS != nil {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, CaFile: c.TLS.CAFile,
			Verify: true, // require and check the peer's certificate
		})
		if err != nil {
			return fmt.Errorf("queue: cluster tls: %w", err)
		}
		// A node is both ends of its routes: it checks the peers it dials
		// against the same CA, as nats-server's own config parser does.
		tc.RootCAs = tc.ClientCAs
		o.Cluster.TLSConfig = tc
		o.Cluster.TLSTimeout = 5
	}
	o.Cluster.Host = host
	o.Cluster.Port = port
	for _, p := range c.Peers {
		u, err := url.Parse("nats-route://" + p)
		if err != nil {
			return fmt.Errorf("queue: cluster peer %q: %w", p, err)
		}
		o.Routes = append(o.Routes, u)
	}
	return nil
}
