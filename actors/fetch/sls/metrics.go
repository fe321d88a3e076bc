package sls

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	records        *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	publishErrors  *prometheus.CounterVec
	checkpointTime *prometheus.GaugeVec
	lag            *lagGauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	shard := []string{"shard"}
	m := &metrics{
		records:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sls_records_total", Help: "Records pulled and acked by RAW, by shard."}, shard),
		bytes:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sls_bytes_total", Help: "Bytes of records pulled and acked by RAW, by shard."}, shard),
		publishErrors:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_sls_publish_errors_total", Help: "Pulls whose publish to RAW failed and will be retried, by shard."}, shard),
		checkpointTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_sls_checkpoint_timestamp_seconds", Help: "Time of the newest record covered by the shard's checkpoint."}, shard),
		lag:            newLagGauge(),
	}
	for _, c := range []prometheus.Collector{m.records, m.bytes, m.publishErrors, m.checkpointTime, m.lag} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
