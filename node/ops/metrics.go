package ops

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type metrics struct {
	jobs    *prometheus.GaugeVec
	records *prometheus.CounterVec
	bytes   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, mgr *Manager) (*metrics, error) {
	m := &metrics{
		jobs:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_ops_jobs_running", Help: "Replay and re-drive jobs running, by kind."}, []string{"kind"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ops_records_total", Help: "Records sent by replay and re-drive jobs, by kind."}, []string{"kind"}),
		bytes:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ops_bytes_total", Help: "Bytes sent by replay and re-drive jobs, by kind."}, []string{"kind"}),
	}
	remaining := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_ops_remaining_records", Help: "Records the running jobs have still to send."},
		func() float64 {
			var n int64
			for _, j := range mgr.Jobs() {
				if j.State == JobRunning {
					n += max(0, j.Total.Records-j.Done.Records)
				}
			}
			return float64(n)
		})
	for _, k := range []string{KindReplay, KindRedrive, KindMove} {
		m.jobs.WithLabelValues(k)
		m.records.WithLabelValues(k)
		m.bytes.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.jobs, m.records, m.bytes, remaining, newOrphanCollector(mgr)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// series is a metric family's values keyed by their labels.
type series map[string]float64

// snapshot is every metric family of a registry: name → labels → value.
type snapshot map[string]series

// sample reads the registry.
func sample(g prometheus.Gatherer) snapshot {
	out := snapshot{}
	if g == nil {
		return out
	}
	fams, _ := g.Gather() // a failing collector leaves its metrics out; status shows the rest
	for _, f := range fams {
		s := series{}
		for _, m := range f.GetMetric() {
			s[labelKey(m.GetLabel())] = value(m)
		}
		out[f.GetName()] = s
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// labelKey is labels as name=value pairs joined by commas, sorted.
func labelKey(ls []*dto.LabelPair) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.GetName() + "=" + l.GetValue()
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// labels parses a labelKey back.
func labels(key string) map[string]string {
	out := map[string]string{}
	for _, p := range strings.Split(key, ",") {
		if k, v, ok := strings.Cut(p, "="); ok {
			out[k] = v
		}
	}
	return out
}

// sum adds the values of name whose labels include every pair of match.
func (s snapshot) sum(name string, match map[string]string) float64 {
	var total float64
	for key, v := range s[name] {
		if matches(labels(key), match) {
			total += v
		}
	}
	return total
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// rateSampler keeps two samples of the registry a few seconds apart, so
// that status can show rates without the caller waiting.
type rateSampler struct {
	g        prometheus.Gatherer
	every    time.Duration
	mu       sync.Mutex
	prev     snapshot
	prevAt   time.Time
	latest   snapshot
	latestAt time.Time
}

func newRateSampler(g prometheus.Gatherer) *rateSampler {
	return &rateSampler{g: g, every: 5 * time.Second}
}

func (r *rateSampler) run(ctx context.Context) {
	r.take()
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.take()
		}
	}
}

func (r *rateSampler) take() {
	s := sample(r.g)
	r.mu.Lock()
	r.prev, r.prevAt = r.latest, r.latestAt
	r.latest, r.latestAt = s, time.Now()
	r.mu.Unlock()
}

// perSecond is the rate of the summed counter over the last interval; 0
// until two samples exist.
func (r *rateSampler) perSecond(name string, match map[string]string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prev == nil {
		return 0
	}
	dt := r.latestAt.Sub(r.prevAt).Seconds()
	if dt <= 0 {
		return 0
	}
	return max(0, (r.latest.sum(name, match)-r.prev.sum(name, match))/dt)
}
