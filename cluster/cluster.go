// Package cluster is what a multi-node sluice adds to its buffer, the
// queue, beyond the embedded JetStream cluster itself (which does
// membership, RAFT and placement): the routes between nodes and their
// mutual TLS, the certificates for it, the peer and leader state that
// status and the metrics show, and the quorum watch that pauses a node
// cut off from the others. It imports queue; queue knows of it only as
// an option hook on its server's options.
package cluster

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
)

// Options join a node's embedded server to the other nodes.
type Options struct {
	Name   string
	Listen string   // route listener host:port
	Peers  []string // host:port of every node's route listener
	// TLS is required when Listen is not a loopback address, unless
	// Insecure says to run routes without it.
	TLS      *TLS
	Insecure bool
	// PauseAfter: a node that has heard from no quorum of the cluster for
	// this long pauses its work (quorum.go); default DefaultPauseAfter.
	PauseAfter time.Duration
}

// TLS is mutual TLS for routes: each node presents CertFile/KeyFile and
// accepts only peers whose certificate CAFile signed.
type TLS struct {
	CertFile, KeyFile, CAFile string
}

// Cluster is a node's queue running as part of a JetStream cluster, with
// the watch on its contact with a quorum.
type Cluster struct {
	q      *queue.Queue
	opts   Options
	quorum *QuorumWatch
}

// Start starts the queue qopts describe as a node of the cluster o
// describes: its server listens for routes and dials every peer, its
// streams have qopts.Replicas replicas, and a quorum watch starts once
// they are ready. The cluster's metrics go to qopts.Metrics.
func Start(ctx context.Context, qopts queue.Options, o Options) (*Cluster, error) {
	if o.PauseAfter <= 0 {
		o.PauseAfter = DefaultPauseAfter
	}
	own := qopts.Configure
	qopts.Configure = func(so *server.Options) error {
		if own != nil {
			if err := own(so); err != nil {
				return err
			}
		}
		return o.apply(so)
	}
	q, err := queue.Start(ctx, qopts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{q: q, opts: o}
	qo := q.Options() // with the queue's defaults: its logger and registry
	if c.quorum, err = newQuorumWatch(o.PauseAfter, c.quorumContact, qo.Logger, qo.Metrics); err != nil {
		q.Close()
		return nil, err
	}
	if err := qo.Metrics.Register(&collector{c: c}); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: metrics: %w", err)
	}
	return c, nil
}

// Queue is the node's buffer, which the cluster replicates.
func (c *Cluster) Queue() *queue.Queue { return c.q }

// Quorum watches this node's contact with a quorum of the cluster; nil
// for a nil Cluster (a single node, which never pauses).
func (c *Cluster) Quorum() *QuorumWatch {
	if c == nil {
		return nil
	}
	return c.quorum
}

// Close stops the quorum watch, then the queue.
func (c *Cluster) Close() {
	c.quorum.Close()
	c.q.Close()
}

// apply sets the route listener and the routes to every peer.
func (o Options) apply(so *server.Options) error {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("cluster: listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("cluster: listen %q: bad port", o.Listen)
	}
	// Whoever reaches a route port joins as a peer and can read or purge
	// every stream: off loopback, only mutual TLS lets a peer in.
	if o.TLS == nil && !o.Insecure && !conf.LoopbackHost(host) {
		return fmt.Errorf("cluster: listen %s is not a loopback address: routes need TLS (or Insecure)", o.Listen)
	}
	so.Cluster.Name = o.Name
	if o.TLS != nil {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: o.TLS.CertFile, KeyFile: o.TLS.KeyFile, CaFile: o.TLS.CAFile,
			Verify: true, // require and check the peer's certificate
		})
		if err != nil {
			return fmt.Errorf("cluster: tls: %w", err)
		}
		// A node is both ends of its routes: it checks the peers it dials
		// against the same CA, as nats-server's own config parser does.
		tc.RootCAs = tc.ClientCAs
		so.Cluster.TLSConfig = tc
		so.Cluster.TLSTimeout = 5
	}
	so.Cluster.Host = host
	so.Cluster.Port = port
	for _, p := range o.Peers {
		u, err := url.Parse("nats-route://" + p)
		if err != nil {
			return fmt.Errorf("cluster: peer %q: %w", p, err)
		}
		so.Routes = append(so.Routes, u)
	}
	return nil
}
