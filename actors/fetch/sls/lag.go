package sls

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lagGauge is sluice_sls_lag_seconds, worked out when it is read: the age
// of the newest record stored from a shard while the shard has more to
// read, 0 once a pull came back empty (caught up). It goes on growing
// while the source is stalled — RAW full, SLS failing, the node paused —
// where a figure set after each successful pull froze exactly then.
type lagGauge struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu     sync.Mutex
	shards map[string]*shardLag
}

type shardLag struct {
	behind bool      // data waits at the read position
	upTo   time.Time // the newest record stored (or, before any, the newest of a pull that waits)
}

func newLagGauge() *lagGauge {
	return &lagGauge{
		desc: prometheus.NewDesc("sluice_sls_lag_seconds",
			"Age of the newest record stored from the shard while it has more to read (grows while the source is stalled); 0 when caught up.",
			[]string{"shard"}, nil),
		now: time.Now, shards: map[string]*shardLag{},
	}
}

func (g *lagGauge) shard(s string) *shardLag {
	if g.shards[s] == nil {
		g.shards[s] = &shardLag{}
	}
	return g.shards[s]
}

// caughtUp: a pull came back empty.
func (g *lagGauge) caughtUp(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shard(s).behind = false
}

// stored: a pull was stored; newest is its newest record.
func (g *lagGauge) stored(s string, newest time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sl := g.shard(s)
	sl.behind, sl.upTo = true, newest
}

// waiting: a pull could not be stored; newest is its newest record, the
// age to show (at least) when nothing of the shard was stored yet.
func (g *lagGauge) waiting(s string, newest time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sl := g.shard(s)
	if sl.upTo.IsZero() {
		sl.upTo = newest
	}
	sl.behind = true
}

// reset forgets every shard: the fetcher stopped, and the shards' lag is
// whoever reads them next's to tell.
func (g *lagGauge) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.shards)
}

func (g *lagGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *lagGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for s, sl := range g.shards {
		v := 0.0
		if sl.behind && !sl.upTo.IsZero() {
			v = max(0, now.Sub(sl.upTo).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, s)
	}
}
