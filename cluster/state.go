package cluster

import (
	"context"
	"sort"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/queue"
)

// streams are the queue's streams, each replicated on the cluster.
var streams = []string{queue.StreamRaw, queue.StreamOut, queue.StreamDLQ}

// PeerState is another node of the cluster as this one sees it.
type PeerState struct {
	Name    string `json:"name"`
	RouteUp bool   `json:"route_up"`
	// LastSeen is the last traffic on a route to it, or, with no route, when
	// the stream leaders last heard from it.
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// State is the JetStream cluster around this node.
type State struct {
	Name       string      `json:"name"`
	Self       string      `json:"self"`
	MetaLeader string      `json:"meta_leader"` // empty without a quorum
	Peers      []PeerState `json:"peers"`
	// Quorum says whether this node paused for lack of a quorum.
	Quorum *QuorumState `json:"quorum,omitempty"`
}

// State reads routes and replica info; nil for a nil Cluster (a single
// node).
func (c *Cluster) State(ctx context.Context) *State {
	if c == nil {
		return nil
	}
	return c.StateFrom(c.streamInfos(ctx))
}

// streamInfos are the infos of the streams that answer.
func (c *Cluster) streamInfos(ctx context.Context) []*jetstream.StreamInfo {
	var infos []*jetstream.StreamInfo
	for _, name := range streams {
		if s, err := c.q.JetStream().Stream(ctx, name); err == nil {
			infos = append(infos, s.CachedInfo()) // Stream just asked for it
		}
	}
	return infos
}

// StateFrom is State from stream infos the caller already read; nil for a
// nil Cluster (a single node).
func (c *Cluster) StateFrom(infos []*jetstream.StreamInfo) *State {
	if c == nil {
		return nil
	}
	srv := c.q.Server()
	st := &State{Name: c.opts.Name, Self: c.q.Options().ServerName}
	qs := c.quorum.State()
	st.Quorum = &qs
	if jsz, err := srv.Jsz(nil); err == nil && jsz.Meta != nil {
		st.MetaLeader = jsz.Meta.Leader
	}
	peers := map[string]*PeerState{}
	peer := func(name string) *PeerState {
		if peers[name] == nil {
			peers[name] = &PeerState{Name: name}
		}
		return peers[name]
	}
	if rz, err := srv.Routez(&server.RoutezOptions{}); err == nil {
		for _, r := range rz.Routes {
			if r.RemoteName == "" {
				continue
			}
			p := peer(r.RemoteName)
			p.RouteUp = true
			if r.LastActivity.After(p.LastSeen) {
				p.LastSeen = r.LastActivity
			}
		}
	}
	for _, info := range infos {
		if info.Cluster == nil {
			continue
		}
		for _, r := range info.Cluster.Replicas {
			p := peer(r.Name)
			if seen := time.Now().Add(-r.Active); !p.RouteUp && seen.After(p.LastSeen) {
				p.LastSeen = seen
			}
		}
		if l := info.Cluster.Leader; l != "" && l != st.Self {
			peer(l)
		}
	}
	delete(peers, st.Self)
	for _, p := range peers {
		st.Peers = append(st.Peers, *p)
	}
	sort.Slice(st.Peers, func(a, b int) bool { return st.Peers[a].Name < st.Peers[b].Name })
	return st
}

var (
	peerUpDesc       = prometheus.NewDesc("sluice_cluster_peer_up", "1 while a route to the peer node is up.", []string{"peer"}, nil)
	peerSeenDesc     = prometheus.NewDesc("sluice_cluster_peer_last_seen_seconds", "Seconds since this node last heard from the peer.", []string{"peer"}, nil)
	metaLeaderDesc   = prometheus.NewDesc("sluice_cluster_meta_leader", "1 for the node that leads the JetStream meta group (as this node sees it).", []string{"peer"}, nil)
	quorumDesc       = prometheus.NewDesc("sluice_cluster_has_meta_leader", "1 while this node sees a JetStream meta leader (a quorum).", nil, nil)
	streamLeaderDesc = prometheus.NewDesc("sluice_stream_leader", "1 for the node that leads the stream's replicas.", []string{"stream", "peer"}, nil)
	replicaLagDesc   = prometheus.NewDesc("sluice_stream_replica_lag", "Operations a stream follower is behind its leader.", []string{"stream", "peer"}, nil)
	replicaCurDesc   = prometheus.NewDesc("sluice_stream_replica_current", "1 while a stream follower is caught up and seen recently.", []string{"stream", "peer"}, nil)
)

// collector reads the streams' leaders and replicas and the cluster state
// at scrape time.
type collector struct{ c *Cluster }

func (col *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peerUpDesc, peerSeenDesc, metaLeaderDesc, quorumDesc, streamLeaderDesc, replicaLagDesc, replicaCurDesc} {
		ch <- d
	}
}

func (col *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	infos := col.c.streamInfos(ctx) // for the cluster state too: read once
	for _, info := range infos {
		cl := info.Cluster
		if cl == nil {
			continue
		}
		name := info.Config.Name
		if cl.Leader != "" {
			ch <- prometheus.MustNewConstMetric(streamLeaderDesc, prometheus.GaugeValue, 1, name, cl.Leader)
		}
		for _, r := range cl.Replicas {
			ch <- prometheus.MustNewConstMetric(replicaLagDesc, prometheus.GaugeValue, float64(r.Lag), name, r.Name)
			ch <- prometheus.MustNewConstMetric(replicaCurDesc, prometheus.GaugeValue, boolValue(r.Current && !r.Offline), name, r.Name)
		}
	}
	st := col.c.StateFrom(infos)
	ch <- prometheus.MustNewConstMetric(quorumDesc, prometheus.GaugeValue, boolValue(st.MetaLeader != ""))
	if st.MetaLeader != "" {
		ch <- prometheus.MustNewConstMetric(metaLeaderDesc, prometheus.GaugeValue, 1, st.MetaLeader)
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(peerUpDesc, prometheus.GaugeValue, boolValue(p.RouteUp), p.Name)
		if !p.LastSeen.IsZero() {
			ch <- prometheus.MustNewConstMetric(peerSeenDesc, prometheus.GaugeValue, time.Since(p.LastSeen).Seconds(), p.Name)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
