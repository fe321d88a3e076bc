package queue

import (
	"context"
	"sort"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// PeerState is another node of the cluster as this one sees it.
type PeerState struct {
	Name    string `json:"name"`
	RouteUp bool   `json:"route_up"`
	// LastSeen is the last traffic on a route to it, or, with no route, when
	// the stream leaders last heard from it.
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// ClusterState is the JetStream cluster around this node.
type ClusterState struct {
	Name       string      `json:"name"`
	Self       string      `json:"self"`
	MetaLeader string      `json:"meta_leader"` // empty without a quorum
	Peers      []PeerState `json:"peers"`
	// Quorum says whether this node paused for lack of a quorum.
	Quorum *QuorumState `json:"quorum,omitempty"`
}

// ClusterState reads routes and replica info; nil when the node is not
// part of a cluster.
func (q *Queue) ClusterState(ctx context.Context) *ClusterState {
	if q.opts.Cluster == nil {
		return nil
	}
	var infos []*jetstream.StreamInfo
	for _, s := range streamShares {
		if info, err := q.StreamInfo(ctx, s.name); err == nil {
			infos = append(infos, info)
		}
	}
	return q.ClusterStateFrom(infos)
}

// ClusterStateFrom is ClusterState from stream infos the caller already
// read; nil when the node is not part of a cluster.
func (q *Queue) ClusterStateFrom(infos []*jetstream.StreamInfo) *ClusterState {
	if q.opts.Cluster == nil {
		return nil
	}
	st := &ClusterState{Name: q.opts.Cluster.Name, Self: q.opts.ServerName}
	if q.quorum != nil {
		qs := q.quorum.State()
		st.Quorum = &qs
	}
	if jsz, err := q.srv.Jsz(nil); err == nil && jsz.Meta != nil {
		st.MetaLeader = jsz.Meta.Leader
	}
	peers := map[string]*PeerState{}
	peer := func(name string) *PeerState {
		if peers[name] == nil {
			peers[name] = &PeerState{Name: name}
		}
		return peers[name]
	}
	if rz, err := q.srv.Routez(&server.RoutezOptions{}); err == nil {
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
