package transform

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	recordsIn    prometheus.Counter
	outputs      *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	dlq          *prometheus.CounterVec
	evalSeconds  prometheus.Histogram
	evalTimeouts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		recordsIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_transform_records_total", Help: "Records read from RAW."}),
		outputs:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_transform_outputs_total", Help: "Outputs published to OUT, by sink."}, []string{"sink"}),
		dropped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_transform_dropped_total", Help: "Records no policy routed (dropped by policy), by schema."}, []string{"schema"}),
		dlq:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_transform_dlq_total", Help: "Records sent to the DLQ, by reason."}, []string{"reason"}),
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_transform_eval_seconds", Help: "Policy evaluation time per record.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2, 16)}),
	}
	m.evalTimeouts = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_transform_eval_timeouts_total", Help: "Evaluations that hit the time limit (each record gets a second try)."})
	for _, c := range []prometheus.Collector{m.recordsIn, m.outputs, m.dropped, m.dlq, m.evalSeconds, m.evalTimeouts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
