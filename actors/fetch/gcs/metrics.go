package gcs

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	notifications *prometheus.CounterVec
	objects       prometheus.Counter
	objectBytes   prometheus.Counter
	records       prometheus.Counter
	recordBytes   prometheus.Counter
	parseErrors   prometheus.Counter
	extensions    prometheus.Counter

	mu       sync.Mutex
	inFlight map[string]time.Time // notification ID → received
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_gcs_notifications_total",
			Help: "Bucket notifications by what became of them: acked (read), skipped_event (not OBJECT_FINALIZE), skipped_policy (no src element), deleted (object gone), too_large, invalid, refused (GCS refuses the read the same way every time, or csv_duplicate_headers: refuse: to the DLQ), nacked."}, []string{"result"}),
		objects:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_gcs_objects_total", Help: "Object reads finished (one per event policy element)."}),
		objectBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_gcs_object_bytes_total", Help: "Bytes read from GCS, as served (compressed when stored so)."}),
		records:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_gcs_records_total", Help: "Records published to RAW and acked."}),
		recordBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_gcs_record_bytes_total", Help: "Bytes of records published to RAW and acked (uncompressed)."}),
		parseErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_gcs_parse_errors_total", Help: "Records that did not parse and went to the DLQ."}),
		extensions: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_gcs_ack_extensions_total",
			Help: "Ack deadlines that a notification outlived while its object was read (each one extended by the client)."}),
		inFlight: map[string]time.Time{},
	}
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_gcs_oldest_unacked_seconds",
		Help: "Age of the oldest notification received and not yet acked or nacked."}, m.oldestSeconds)
	for _, c := range []prometheus.Collector{m.notifications, m.objects, m.objectBytes, m.records, m.recordBytes, m.parseErrors, m.extensions, oldest} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) begin(id string) {
	m.mu.Lock()
	m.inFlight[id] = time.Now()
	m.mu.Unlock()
}

func (m *metrics) end(id string) {
	m.mu.Lock()
	delete(m.inFlight, id)
	m.mu.Unlock()
}

func (m *metrics) oldestSeconds() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var oldest time.Time
	for _, t := range m.inFlight {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest).Seconds()
}
