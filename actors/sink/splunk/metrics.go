package splunk

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Sink states, as the sluice_sink_state gauge reports them.
const (
	stateUp       = 0
	stateRetrying = 1
	statePaused   = 2
)

type metrics struct {
	events     prometheus.Counter
	bytes      prometheus.Counter
	requests   *prometheus.CounterVec
	retries    *prometheus.CounterVec
	dlq        prometheus.Counter
	latency    prometheus.Histogram
	state      prometheus.Gauge
	oldestHeld prometheus.GaugeFunc
	delivery   prometheus.Histogram
}

// newMetrics registers the sink's metrics; reg carries the sink's name label.
func newMetrics(reg prometheus.Registerer, oldest func() float64) (*metrics, error) {
	m := &metrics{
		events:   prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_events_total", Help: "Events the destination accepted (or indexed, with acks on)."}),
		bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_bytes_total", Help: "Bytes of accepted events, before compression."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_requests_total", Help: "Requests sent, by outcome."}, []string{"outcome"}),
		retries:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_retries_total", Help: "Requests retried, by reason."}, []string{"reason"}),
		dlq:      prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_sink_dlq_events_total", Help: "Events the destination refused for good, sent to the DLQ."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_request_seconds", Help: "Request latency.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		state: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_sink_state", Help: "0 up, 1 retrying, 2 paused (destination refuses the token, index or channel)."}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_delivery_latency_seconds",
			Help: "From fetching a batch at the source to the destination accepting it.", Buckets: prometheus.ExponentialBuckets(0.01, 1.5, 30)}),
		oldestHeld: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_sink_oldest_undelivered_seconds",
			Help: "Age of the oldest record the sink holds and has not delivered yet (since it was fetched)."}, oldest),
	}
	m.retries.WithLabelValues("network") // shown at 0 so that rate() and the dashboard work before the first retry
	for _, c := range []prometheus.Collector{m.events, m.bytes, m.requests, m.retries, m.dlq, m.latency, m.state, m.oldestHeld, m.delivery} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
