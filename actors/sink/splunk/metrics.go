package splunk

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors/sink"
)

// metrics are the Splunk sink's own; what every sink exports is the
// runner's (sink.Metrics).
type metrics struct {
	*sink.Metrics
	requests *prometheus.CounterVec
	latency  prometheus.Histogram
}

// newMetrics registers the sink's metrics; reg carries the sink's name label.
func newMetrics(reg prometheus.Registerer, common *sink.Metrics) (*metrics, error) {
	m := &metrics{
		Metrics:  common,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sink_requests_total", Help: "Requests sent, by outcome."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_sink_request_seconds", Help: "Request latency.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
