package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPauseAfter is how long a node may go without contact with
// a quorum of the JetStream meta group before it pauses. A follower hears
// its leader every second (RAFT heartbeat); when a leader dies the others
// elect a new one after an election timeout of 4–9 s, so a node on the
// majority side goes up to ~9 s without contact in a normal failover. 10 s
// is past that: only a node that really lost the quorum pauses.
const DefaultPauseAfter = 10 * time.Second

// quorumResumeWithin: a paused node resumes once it heard from a quorum
// after it paused, and this recently (two RAFT heartbeats).
const quorumResumeWithin = 2 * time.Second

// quorumPoll is how often the watcher reads the meta group's state.
const quorumPoll = 500 * time.Millisecond

// QuorumWatch tells whether this node is in contact with a quorum of the
// JetStream cluster. A node cut off from its peers cannot store anything,
// so while it is paused its sources and sinks take no work (they run
// under Open's context): SLS hands its shards, Pub/Sub its messages and
// JetStream its deliveries to the nodes that can store them.
//
// One goroutine (loop) owns the reading; Open and State only see the
// result, under mu.
type QuorumWatch struct {
	pauseAfter time.Duration
	contact    func(now time.Time) (time.Time, string) // last quorum contact, and who
	log        *slog.Logger
	paused     prometheus.Gauge
	pauses     prometheus.Counter
	age        prometheus.Gauge

	mu    sync.Mutex
	state QuorumState
	lost  chan struct{} // closed when the node pauses (while running)
	back  chan struct{} // closed when it resumes (while paused)
	stop  context.CancelFunc
	done  chan struct{}
}

// QuorumState is what the watcher last decided.
type QuorumState struct {
	Paused bool      `json:"paused"`
	Since  time.Time `json:"since,omitzero"` // when it paused
	// LastContact is when this node last heard from a quorum.
	LastContact time.Time `json:"last_contact,omitzero"`
	Reason      string    `json:"reason,omitempty"`
}

func newQuorumWatch(pauseAfter time.Duration, contact func(time.Time) (time.Time, string), log *slog.Logger, reg prometheus.Registerer) (*QuorumWatch, error) {
	w := &QuorumWatch{
		pauseAfter: pauseAfter, contact: contact, log: log,
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_cluster_paused", Help: "1 while this node takes no work because it lost contact with a quorum of the JetStream cluster.",
		}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_cluster_pauses_total", Help: "Times this node paused for lack of a JetStream quorum.",
		}),
		age: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_cluster_quorum_contact_age_seconds", Help: "Seconds since this node last heard from a quorum of the JetStream meta group.",
		}),
		lost: make(chan struct{}), done: make(chan struct{}),
	}
	for _, c := range []prometheus.Collector{w.paused, w.pauses, w.age} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cluster: quorum metrics: %w", err)
		}
	}
	w.state.LastContact = time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	go w.loop(ctx)
	return w, nil
}

func (w *QuorumWatch) loop(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(quorumPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.check(now)
		}
	}
}

// check reads the contact and pauses or resumes.
func (w *QuorumWatch) check(now time.Time) {
	c, who := w.contact(now)
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.After(w.state.LastContact) {
		w.state.LastContact = c
	}
	age := now.Sub(w.state.LastContact)
	w.age.Set(age.Seconds())
	switch {
	case !w.state.Paused && age > w.pauseAfter:
		w.state = QuorumState{Paused: true, Since: now, LastContact: w.state.LastContact,
			Reason: fmt.Sprintf("no contact with a quorum of the JetStream cluster for %s (%s): nothing can be stored here, so this node takes no work until it is back", age.Round(time.Second), who)}
		close(w.lost)
		w.back = make(chan struct{})
		w.paused.Set(1)
		w.pauses.Inc()
		w.log.Warn("cluster: lost the JetStream quorum; pausing sources and sinks so the other nodes take over their work", "last_contact_ago", age.Round(time.Millisecond).String(), "meta", who)
	case w.state.Paused && w.state.LastContact.After(w.state.Since) && age <= quorumResumeWithin:
		w.log.Info("cluster: JetStream quorum back; resuming sources and sinks", "paused_for", now.Sub(w.state.Since).Round(time.Millisecond).String(), "meta", who)
		w.state = QuorumState{LastContact: w.state.LastContact}
		close(w.back)
		w.lost = make(chan struct{})
		w.paused.Set(0)
	}
}

// Open waits while the node is paused (or until ctx ends) and returns a
// context that ends when the node pauses, or with ctx. Call cancel when
// done with it.
func (w *QuorumWatch) Open(ctx context.Context) (context.Context, context.CancelFunc) {
	for {
		w.mu.Lock()
		paused, back, lost := w.state.Paused, w.back, w.lost
		w.mu.Unlock()
		if paused {
			select {
			case <-back:
				continue
			case <-ctx.Done():
				return ctx, func() {}
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				cancel()
			case <-wctx.Done():
			}
		}()
		return wctx, cancel
	}
}

// State is the watcher's last decision.
func (w *QuorumWatch) State() QuorumState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Ready is nil unless the node is paused (for /readyz).
func (w *QuorumWatch) Ready() error {
	if st := w.State(); st.Paused {
		return fmt.Errorf("paused since %s: %s", st.Since.UTC().Format(time.RFC3339), st.Reason)
	}
	return nil
}

// Close stops the watcher.
func (w *QuorumWatch) Close() {
	w.stop()
	<-w.done
}

// quorumContact is when this server last heard from enough peers to be
// part of a quorum of the meta group (QuorumNeeded counts itself). A peer
// is heard when it leads a RAFT group this server follows (meta, stream
// or consumer: leaders send a heartbeat every second) or answered one this
// server leads. Follower views come first: a leader learns of its
// followers only from their answers, which an idle group sends seldom.
// No meta leader: no contact.
func (c *Cluster) quorumContact(now time.Time) (time.Time, string) {
	self := c.q.Options().ServerName
	jsz, err := c.q.Server().Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil || jsz.Meta == nil {
		return time.Time{}, "meta group unknown"
	}
	m := jsz.Meta
	if m.Leader == "" {
		return time.Time{}, "no meta leader"
	}
	heard := map[string]time.Duration{} // by peer: since last heard
	note := func(ci *server.ClusterInfo) {
		if ci == nil {
			return
		}
		for _, r := range ci.Replicas {
			if r.Name == "" || r.Name == self || (ci.Leader != self && r.Name != ci.Leader) {
				continue // as a follower, only the leader's heartbeat says anything
			}
			if r.Active <= 0 || r.Offline {
				continue // never heard (Active is 0 then), or known gone
			}
			if d, ok := heard[r.Name]; !ok || r.Active < d {
				heard[r.Name] = r.Active
			}
		}
	}
	note(&server.ClusterInfo{Leader: m.Leader, Replicas: m.Replicas})
	for _, a := range jsz.AccountDetails {
		for _, sd := range a.Streams {
			note(sd.Cluster)
			for _, cd := range sd.Consumer {
				if cd != nil {
					note(cd.Cluster)
				}
			}
		}
	}
	need := m.QuorumNeeded - 1
	if need <= 0 {
		return now, "alone in the meta group"
	}
	var ds []time.Duration
	for _, d := range heard {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	if len(ds) < need {
		return time.Time{}, fmt.Sprintf("meta leader %s; heard from %d of the %d peers a quorum needs", m.Leader, len(ds), need)
	}
	return now.Add(-ds[need-1]), fmt.Sprintf("meta leader %s; the %d peers a quorum needs last heard %s ago", m.Leader, need, ds[need-1].Round(time.Second))
}
