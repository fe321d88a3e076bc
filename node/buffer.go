package node

import (
	"context"

	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/queue"
)

// startBuffer starts the queue: as a node of the cluster when the config
// has one (cl is nil otherwise). stop closes what it started.
func startBuffer(ctx context.Context, cfg *Config, qopts queue.Options) (q *queue.Queue, cl *cluster.Cluster, stop func(), err error) {
	c := cfg.Cluster
	if c == nil {
		if q, err = queue.Start(ctx, qopts); err != nil {
			return nil, nil, nil, err
		}
		return q, nil, q.Close, nil
	}
	qopts.Replicas = c.Replicas
	o := cluster.Options{Name: c.Name, Listen: c.Listen, Peers: c.Peers, Insecure: c.Insecure, PauseAfter: c.PauseAfter.D()}
	if c.TLS.CertFile != "" {
		o.TLS = &cluster.TLS{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, CAFile: c.TLS.CAFile}
	}
	if cl, err = cluster.Start(ctx, qopts, o); err != nil {
		return nil, nil, nil, err
	}
	return cl.Queue(), cl, cl.Close, nil
}
