package queue

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	publishedMsgs    *prometheus.CounterVec
	publishedRecords *prometheus.CounterVec
	duplicates       *prometheus.CounterVec
	publishErrors    *prometheus.CounterVec
	ackedMsgs        *prometheus.CounterVec
	ackedRecords     *prometheus.CounterVec
	redelivered      *prometheus.CounterVec
	requeued         *prometheus.CounterVec
	deadLettered     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, q *Queue) (*metrics, error) {
	m := &metrics{
		publishedMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_published_messages_total", Help: "Batch messages stored, by stream.",
		}, []string{"stream"}),
		publishedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_published_records_total", Help: "Records stored, by stream.",
		}, []string{"stream"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_duplicate_messages_total", Help: "Messages JetStream did not store because their ID was stored within the duplicate window, by stream.",
		}, []string{"stream"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_publish_errors_total", Help: "Messages not stored, by reason (buffer_full, other).",
		}, []string{"reason"}),
		ackedMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_acked_messages_total", Help: "Batch messages acked by a stage, by stream and consumer.",
		}, []string{"stream", "consumer"}),
		ackedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_acked_records_total", Help: "Records acked by a stage, by stream and consumer.",
		}, []string{"stream", "consumer"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_redelivered_messages_total", Help: "Deliveries that were not the first, by stream and consumer.",
		}, []string{"stream", "consumer"}),
		requeued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_queue_requeued_messages_total", Help: "Batches a stage stored again at the end of their subject while their destination was in trouble, by stream and consumer.",
		}, []string{"stream", "consumer"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_dlq_records_total", Help: "Records sent to the DLQ, by stage and name.",
		}, []string{"stage", "name"}),
	}
	for _, c := range []prometheus.Collector{m.publishedMsgs, m.publishedRecords, m.duplicates, m.publishErrors, m.ackedMsgs, m.ackedRecords, m.redelivered, m.requeued, m.deadLettered, &streamCollector{q: q}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) published(stream string, msg *nats.Msg) {
	m.publishedMsgs.WithLabelValues(stream).Inc()
	m.publishedRecords.WithLabelValues(stream).Add(float64(parseCount(msg.Header)))
}

func (m *metrics) publishFailed(e *PublishError) {
	for _, err := range e.Errs {
		reason := "other"
		if isBufferFull(err) {
			reason = "buffer_full"
		}
		m.publishErrors.WithLabelValues(reason).Inc()
	}
}

var (
	streamBytesDesc    = prometheus.NewDesc("sluice_stream_bytes", "Bytes stored in the stream.", []string{"stream"}, nil)
	streamMsgsDesc     = prometheus.NewDesc("sluice_stream_messages", "Messages stored in the stream.", []string{"stream"}, nil)
	streamLimitDesc    = prometheus.NewDesc("sluice_stream_max_bytes", "The stream's byte limit.", []string{"stream"}, nil)
	consPendingDesc    = prometheus.NewDesc("sluice_consumer_pending_messages", "Messages not yet delivered to the consumer.", []string{"stream", "consumer"}, nil)
	consAckPendingDesc = prometheus.NewDesc("sluice_consumer_ack_pending_messages", "Messages delivered and not yet acked.", []string{"stream", "consumer"}, nil)
	consRedelivDesc    = prometheus.NewDesc("sluice_consumer_redelivered_messages", "Messages delivered more than once and not yet acked.", []string{"stream", "consumer"}, nil)
)

// streamCollector reads stream and consumer state from JetStream at scrape time.
type streamCollector struct{ q *Queue }

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{streamBytesDesc, streamMsgsDesc, streamLimitDesc, consPendingDesc, consAckPendingDesc, consRedelivDesc} {
		ch <- d
	}
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	if c.q.js == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range []string{StreamRaw, StreamOut, StreamDLQ} {
		s, err := c.q.js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info := s.CachedInfo() // js.Stream just asked for it
		ch <- prometheus.MustNewConstMetric(streamBytesDesc, prometheus.GaugeValue, float64(info.State.Bytes), name)
		ch <- prometheus.MustNewConstMetric(streamMsgsDesc, prometheus.GaugeValue, float64(info.State.Msgs), name)
		ch <- prometheus.MustNewConstMetric(streamLimitDesc, prometheus.GaugeValue, float64(info.Config.MaxBytes), name)
		lister := s.ListConsumers(ctx)
		for ci := range lister.Info() {
			collectConsumer(ch, name, ci)
		}
	}
}

func collectConsumer(ch chan<- prometheus.Metric, stream string, ci *jetstream.ConsumerInfo) {
	if ci.Config.Durable == "" {
		return
	}
	ch <- prometheus.MustNewConstMetric(consPendingDesc, prometheus.GaugeValue, float64(ci.NumPending), stream, ci.Name)
	ch <- prometheus.MustNewConstMetric(consAckPendingDesc, prometheus.GaugeValue, float64(ci.NumAckPending), stream, ci.Name)
	ch <- prometheus.MustNewConstMetric(consRedelivDesc, prometheus.GaugeValue, float64(ci.NumRedelivered), stream, ci.Name)
}
