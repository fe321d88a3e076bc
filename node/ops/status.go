package ops

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/rego"
)

// Status is the whole pipeline of one node on one screen.
type Status struct {
	Node     string         `json:"node"`
	Time     time.Time      `json:"time"`
	Sources  []SourceStatus `json:"sources"`
	Streams  []StreamStatus `json:"streams"`
	Sinks    []SinkStatus   `json:"sinks"`
	Policies *rego.Status   `json:"policies,omitempty"`
	DLQ      []DLQGroup     `json:"dlq"`
	Jobs     []JobStatus    `json:"jobs"`
	Cluster  *ClusterStatus `json:"cluster,omitempty"`
	// Orphans are backlogs of sinks or sources no longer configured:
	// nothing delivers them (sluice backlog move or drop does).
	Orphans []Orphan `json:"orphans,omitempty"`
	// Errors are parts of the status that could not be read.
	Errors []string `json:"errors,omitempty"`
	// Insecure are the protections the config turned off by name.
	Insecure []InsecureSetting `json:"insecure,omitempty"`
}

// SourceStatus is one source and its parts (SLS shards, a GCS subscription).
type SourceStatus struct {
	Component
	Parts []PartStatus `json:"parts"`
}

// PartStatus is one shard or subscription of a source.
type PartStatus struct {
	ID                string     `json:"id"`
	CheckpointTime    *time.Time `json:"checkpoint_time,omitempty"`
	LagSeconds        float64    `json:"lag_seconds"`
	Records           float64    `json:"records"`
	RecordsPerSecond  float64    `json:"records_per_second"`
	BytesPerSecond    float64    `json:"bytes_per_second"`
	Errors            float64    `json:"errors"`
	OldestUnackedSecs float64    `json:"oldest_unacked_seconds,omitempty"`
}

// StreamStatus is one buffer stream and its consumers.
type StreamStatus struct {
	Name        string           `json:"name"`
	Messages    uint64           `json:"messages"`
	Bytes       uint64           `json:"bytes"`
	MaxBytes    int64            `json:"max_bytes"`
	FillPercent float64          `json:"fill_percent"`
	Consumers   []ConsumerStatus `json:"consumers,omitempty"`
	Leader      string           `json:"leader,omitempty"`
	Replicas    []ReplicaStatus  `json:"replicas,omitempty"`
}

// ConsumerStatus is a stage reading a stream.
type ConsumerStatus struct {
	Name       string `json:"name"`
	Subject    string `json:"subject"`
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	// OldestUndeliveredSeconds is the age of the oldest record the stage has
	// not acked yet; 0 when it is caught up.
	OldestUndeliveredSeconds float64 `json:"oldest_undelivered_seconds"`
}

// ReplicaStatus is a follower of a replicated stream.
type ReplicaStatus struct {
	Name    string  `json:"name"`
	Current bool    `json:"current"`
	Offline bool    `json:"offline,omitempty"`
	Lag     uint64  `json:"lag"`
	Active  float64 `json:"active_seconds_ago"`
}

// ClusterStatus is the JetStream cluster this node is part of.
type ClusterStatus = cluster.State

// Sink states, as the sink's sluice_sink_state gauge says.
var sinkStates = map[float64]string{0: "up", 1: "retrying", 2: "paused"}

// SinkStatus is one sink.
type SinkStatus struct {
	Component
	State                    string  `json:"state"`
	Reason                   string  `json:"reason,omitempty"`
	Events                   float64 `json:"events"`
	EventsPerSecond          float64 `json:"events_per_second"`
	BytesPerSecond           float64 `json:"bytes_per_second"`
	Retries                  float64 `json:"retries"`
	DLQ                      float64 `json:"dlq"`
	OldestUndeliveredSeconds float64 `json:"oldest_undelivered_seconds"`
}

// dlqGroupLimit bounds the DLQ walk of a status call; a larger DLQ is
// counted by subject only (sluice dlq list groups it by reason).
const dlqGroupLimit = 50_000

// Status gathers the node's status. A part that cannot be read is named in
// Errors; the rest is still shown.
func (m *Manager) Status(ctx context.Context) Status {
	st := Status{Node: m.deps.Node, Time: time.Now().UTC(), Jobs: m.Jobs(), Insecure: insecureOn(m.deps.Insecure)}
	snap := sample(m.deps.Registry)
	fail := func(what string, err error) { st.Errors = append(st.Errors, fmt.Sprintf("%s: %v", what, err)) }

	for _, c := range m.deps.Sources {
		st.Sources = append(st.Sources, m.sourceStatus(c, snap))
	}
	var infos []*jetstream.StreamInfo // read once, for the streams and the cluster
	for _, name := range []string{queue.StreamRaw, queue.StreamOut, queue.StreamDLQ} {
		info, err := m.deps.Queue.StreamInfo(ctx, name)
		if err != nil {
			fail("stream "+name, err)
			continue
		}
		infos = append(infos, info)
		s, err := m.streamStatus(ctx, info)
		if err != nil {
			fail("stream "+name, err)
			continue
		}
		st.Streams = append(st.Streams, s)
	}
	health := map[string]string{}
	if m.deps.Actors != nil {
		for _, a := range m.deps.Actors() {
			reason := a.Unhealthy
			switch {
			case reason != "":
			case a.State == actors.StatePaused: // its last error, if any, is older
				reason = "paused: this node has no JetStream quorum (see CLUSTER)"
			case a.State != "running":
				reason = string(a.State) + ": " + a.LastError
			}
			health[a.Name] = reason
		}
	}
	for _, c := range m.deps.Sinks {
		match := map[string]string{"sink": c.Name}
		s := SinkStatus{Component: c, State: sinkStates[snap.sum("sluice_sink_state", match)], Reason: health["sink/"+c.Name],
			Events:          snap.sum("sluice_sink_events_total", match),
			EventsPerSecond: m.rate.perSecond("sluice_sink_events_total", match),
			BytesPerSecond:  m.rate.perSecond("sluice_sink_bytes_total", match),
			Retries:         snap.sum("sluice_sink_retries_total", match),
			DLQ:             snap.sum("sluice_sink_dlq_events_total", match),
		}
		for _, str := range st.Streams {
			for _, cs := range str.Consumers {
				if str.Name == queue.StreamOut && cs.Name == "sink-"+c.Name {
					s.OldestUndeliveredSeconds = cs.OldestUndeliveredSeconds
				}
			}
		}
		if s.State == "" {
			s.State = "unknown"
		}
		st.Sinks = append(st.Sinks, s)
	}
	if m.deps.Policies != nil {
		p := m.deps.Policies.Status()
		st.Policies = &p
	}
	if dlq, err := m.dlqStatus(ctx, st.Streams); err != nil {
		fail("dlq", err)
	} else {
		st.DLQ = dlq
	}
	st.Cluster = m.deps.Cluster.StateFrom(infos)
	if orphans, err := m.Orphans(ctx); err != nil {
		fail("orphan backlogs", err)
	} else {
		st.Orphans = orphans
	}
	return st
}

// sourceStatus reads a source's progress from the metrics its type names:
// one part per value of its part label (an SLS shard), else one part.
func (m *Manager) sourceStatus(c Component, snap snapshot) SourceStatus {
	s := SourceStatus{Component: c}
	p := c.Progress
	if p.Records == "" {
		return s
	}
	match := map[string]string{"source": c.Name}
	if p.PartLabel == "" {
		s.Parts = append(s.Parts, m.partStatus(c.Detail, p, match, snap))
		return s
	}
	var parts []string
	for key := range snap[p.Records] {
		if l := labels(key); matches(l, match) {
			parts = append(parts, l[p.PartLabel])
		}
	}
	sort.Slice(parts, func(a, b int) bool { return lessNumeric(parts[a], parts[b]) })
	for _, part := range parts {
		pm := map[string]string{"source": c.Name, p.PartLabel: part}
		s.Parts = append(s.Parts, m.partStatus(p.PartLabel+" "+part, p, pm, snap))
	}
	return s
}

// partStatus is one part of a source, from the metrics matching match.
func (m *Manager) partStatus(id string, p component.Progress, match map[string]string, snap snapshot) PartStatus {
	ps := PartStatus{ID: id,
		Records:          snap.sum(p.Records, match),
		RecordsPerSecond: m.rate.perSecond(p.Records, match),
		BytesPerSecond:   m.rate.perSecond(p.Bytes, match),
		Errors:           snap.sum(p.Errors, match),
		LagSeconds:       snap.sum(p.Lag, match),
		// An empty name sums to 0: a type without the metric shows none.
		OldestUnackedSecs: snap.sum(p.Oldest, match),
	}
	if p.Checkpoint != "" {
		if ts := snap.sum(p.Checkpoint, match); ts > 0 {
			t := time.Unix(0, int64(ts*1e9)).UTC()
			ps.CheckpointTime = &t
		}
	}
	return ps
}

func lessNumeric(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func (m *Manager) streamStatus(ctx context.Context, info *jetstream.StreamInfo) (StreamStatus, error) {
	q := m.deps.Queue
	name := info.Config.Name
	s := StreamStatus{Name: name, Messages: info.State.Msgs, Bytes: info.State.Bytes, MaxBytes: info.Config.MaxBytes}
	if s.MaxBytes > 0 {
		s.FillPercent = 100 * float64(s.Bytes) / float64(s.MaxBytes)
	}
	if c := info.Cluster; c != nil {
		s.Leader = c.Leader
		for _, r := range c.Replicas {
			s.Replicas = append(s.Replicas, ReplicaStatus{Name: r.Name, Current: r.Current, Offline: r.Offline, Lag: r.Lag, Active: r.Active.Seconds()})
		}
	}
	cons, err := q.ConsumerInfos(ctx, name)
	if err != nil {
		return s, err
	}
	for _, ci := range cons {
		cs := ConsumerStatus{Name: ci.Name, Subject: ci.Config.FilterSubject, Pending: ci.NumPending, AckPending: ci.NumAckPending}
		if ci.NumPending > 0 || ci.NumAckPending > 0 {
			if t, ok, err := q.OldestAfter(ctx, name, cs.Subject, ci.AckFloor.Stream); err == nil && ok {
				cs.OldestUndeliveredSeconds = time.Since(t).Seconds()
			}
		}
		s.Consumers = append(s.Consumers, cs)
	}
	sort.Slice(s.Consumers, func(a, b int) bool { return s.Consumers[a].Name < s.Consumers[b].Name })
	return s, nil
}

// dlqStatus groups the DLQ by stage, name and reason, or by subject only
// when it is too large to walk on every status call.
func (m *Manager) dlqStatus(ctx context.Context, streams []StreamStatus) ([]DLQGroup, error) {
	for _, s := range streams {
		if s.Name != queue.StreamDLQ {
			continue
		}
		if s.Messages == 0 {
			return []DLQGroup{}, nil
		}
		if s.Messages <= dlqGroupLimit {
			return m.DLQGroups(ctx, DLQFilter{})
		}
	}
	counts, err := m.deps.Queue.SubjectCounts(ctx, queue.StreamDLQ)
	if err != nil {
		return nil, err
	}
	var out []DLQGroup
	for subj, n := range counts {
		parts := strings.SplitN(subj, ".", 3)
		if len(parts) == 3 {
			out = append(out, DLQGroup{Stage: parts[1], Name: parts[2], Reason: "(too many to group here: run sluice dlq list)", Count: int(n)})
		}
	}
	return out, nil
}
