package sink

import "github.com/prometheus/client_golang/prometheus"

// Sink states, as the sluice_sink_state gauge reports them.
const (
	StateUp       = 0
	StateRetrying = 1
	StatePaused   = 2
)

// Metrics are what every sink exports (sluice status, the dashboard and
// the alerts read them); the writer counts what only it knows.
type Metrics struct {
	Events, Bytes prometheus.Counter     // accepted by the destination
	Retries       *prometheus.CounterVec // by reason
	State         prometheus.Gauge       // StateUp, StateRetrying, StatePaused

	dlq      prometheus.Counter
	delivery prometheus.Histogram
	oldest   prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, oldest func() float64) (*Metrics, error) {
	m := &Metrics{
		Events:  prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_events_total", Help: "Events the destination accepted (or indexed, with acks on)."}),
		Bytes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_bytes_total", Help: "Bytes of accepted events, before compression."}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_retries_total", Help: "Requests retried, by reason."}, []string{"reason"}),
		State:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_sink_state", Help: "0 up, 1 retrying, 2 paused (destination refuses the token, index or channel)."}),
		dlq:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_dlq_events_total", Help: "Events the destination refused for good, sent to the DLQ."}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_delivery_latency_seconds",
			Help: "From fetching a batch at the source to the destination accepting it.", Buckets: prometheus.ExponentialBuckets(0.01, 1.5, 30)}),
		oldest: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_sink_oldest_undelivered_seconds",
			Help: "Age of the oldest record the sink holds and has not delivered yet (since it was fetched)."}, oldest),
	}
	m.Retries.WithLabelValues("network") // shown at 0 so that rate() and the dashboard work before the first retry
	for _, c := range []prometheus.Collector{m.Events, m.Bytes, m.Retries, m.State, m.dlq, m.delivery, m.oldest} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
