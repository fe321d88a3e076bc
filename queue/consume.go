package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/queue/batch"
)

// ErrNoMessage is returned by Next when nothing arrived within maxWait.
var ErrNoMessage = errors.New("no message")

// ConsumerConfig describes a stage's durable pull consumer.
type ConsumerConfig struct {
	Stream  string // StreamRaw or StreamOut
	Durable string // shared by every node, so work spreads over them
	Subject string // filter subject
	// AckWait is how long a delivery may stay unacked before JetStream sends
	// it again; long work calls Delivery.InProgress. Default 30s.
	AckWait time.Duration
	// MaxAckPending bounds deliveries handed out and not yet acked. Default 256.
	MaxAckPending int
	// MaxDeliveries: a message delivered more often than this without an ack
	// (the stage crashed on it, or timed out every time) has each of its
	// records sent to the DLQ and is then acked. 0 means never.
	MaxDeliveries int
	// Stage and Name label DLQ subjects and metrics ("transform"/"transform",
	// "sink"/<sink name>).
	Stage Stage
	Name  string
}

// Consumer hands out deliveries of one durable consumer.
//
// It fetches only when a stage asks, and only as many as asked: a fetched
// delivery's ack-wait clock runs, so a delivery nobody is working on must
// not exist (a prefetch buffer would be redelivered while it waits, and
// count towards MaxDeliveries during a long outage).
type Consumer struct {
	q    *Queue
	cfg  ConsumerConfig
	cons jetstream.Consumer
}

// Delivery is one batch message handed to a stage. Ack it only when its work
// is safely done.
type Delivery struct {
	Subject   string
	Data      []byte // the batch's body: Records splits it
	ID        string // the message ID (Nats-Msg-Id); BatchID is the batch's
	Delivered uint64 // 1 on the first delivery
	Seq       uint64 // stream sequence
	Pending   uint64 // messages waiting for the consumer behind this one when it was sent
	Time      time.Time
	msg       jetstream.Msg
	c         *Consumer

	header   nats.Header
	metaOnce sync.Once
	meta     batch.Meta
}

// Meta is the batch's Meta, read from its headers on the first call.
func (d *Delivery) Meta() batch.Meta {
	d.metaOnce.Do(func() { _, d.meta = batch.ParseMeta(d.header) })
	return d.meta
}

// Records splits the batch's body into its records; they alias Data.
func (d *Delivery) Records() ([][]byte, error) { return batch.Decode(d.Data) }

// Ack marks the delivery done; JetStream will not send it again.
func (d *Delivery) Ack() error {
	if err := d.msg.Ack(); err != nil {
		return err
	}
	d.acked()
	return nil
}

func (d *Delivery) acked() {
	if d.c != nil {
		m := d.c.q.metrics
		m.ackedMsgs.WithLabelValues(d.c.cfg.Stream, d.c.cfg.Durable).Inc()
		m.ackedRecords.WithLabelValues(d.c.cfg.Stream, d.c.cfg.Durable).Add(float64(d.Meta().Count))
	}
}

// AckSync acks the delivery and waits until JetStream confirms it: in a
// cluster, once the consumer's replicas stored the ack. A node cut off
// from the quorum gets no confirmation (a plain Ack would say nothing),
// and the delivery will be sent again elsewhere.
func (d *Delivery) AckSync(ctx context.Context) error {
	if err := d.msg.DoubleAck(ctx); err != nil {
		return err
	}
	d.acked()
	return nil
}

// Nak asks for the delivery to be sent again after delay.
func (d *Delivery) Nak(delay time.Duration) error { return d.msg.NakWithDelay(delay) }

// InProgress resets the ack-wait timer for slow work.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Consumer creates or binds the durable consumer and starts pulling.
func (q *Queue) Consumer(ctx context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if cfg.Durable == "" || cfg.Stream == "" {
		return nil, errors.New("queue: consumer needs Stream and Durable")
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = 256
	}
	if cfg.Stage == "" {
		cfg.Stage = Stage(cfg.Durable)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Durable
	}
	jcfg := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		FilterSubject: cfg.Subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1, // sluice decides when to give up (MaxDeliveries), so nothing is stranded unacked
		MaxAckPending: cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	var cons jetstream.Consumer
	var err error
	wait := backoff.New(100*time.Millisecond, 2*time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err = q.js.CreateOrUpdateConsumer(actx, cfg.Stream, jcfg)
		cancel()
		if err == nil || !retryableStreamError(err) {
			break
		}
		if !wait.Wait(ctx) {
			return nil, fmt.Errorf("queue: consumer %s on %s: %w (last error: %v)", cfg.Durable, cfg.Stream, ctx.Err(), err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("queue: consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	c := &Consumer{q: q, cfg: cfg, cons: cons}
	// Shown at 0 from the start, so that rate() and the dashboard work
	// before the first requeue.
	q.metrics.requeued.WithLabelValues(cfg.Stream, cfg.Durable)
	q.mu.Lock()
	q.consumers = append(q.consumers, c)
	q.mu.Unlock()
	return c, nil
}

// Next returns one delivery, waiting at most maxWait (ErrNoMessage).
func (c *Consumer) Next(ctx context.Context, maxWait time.Duration) (*Delivery, error) {
	ds, err := c.Fetch(ctx, 1, maxWait)
	if err != nil {
		return nil, err
	}
	return ds[0], nil
}

// Fetch returns up to n deliveries, waiting at most maxWait for the first
// (ErrNoMessage when none came). Deliveries over MaxDeliveries are
// dead-lettered here and never returned.
//
// A pull request is never cancelled from this side: the server may already
// have sent a message to it, and a client that stopped listening would
// strand that message until AckWait. Pulls instead expire on the server
// after at most pullSlice, so a cancelled ctx returns within that time, and
// what came meanwhile is given back at once.
func (c *Consumer) Fetch(ctx context.Context, n int, maxWait time.Duration) ([]*Delivery, error) {
	deadline := time.Now().Add(maxWait)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wait := min(max(time.Until(deadline), 10*time.Millisecond), pullSlice)
		batch, err := c.cons.Fetch(n, jetstream.FetchMaxWait(wait))
		if err != nil {
			if errors.Is(err, jetstream.ErrNoMessages) || isTimeout(err) {
				return nil, ErrNoMessage
			}
			return nil, fmt.Errorf("queue: consumer %s: %w", c.cfg.Durable, err)
		}
		out, err := c.take(ctx, batch, nil)
		if err != nil {
			return nil, err
		}
		if err := batch.Error(); err != nil && len(out) == 0 && !errors.Is(err, jetstream.ErrNoMessages) && !isTimeout(err) {
			return nil, fmt.Errorf("queue: consumer %s: %w", c.cfg.Durable, err)
		}
		if len(out) > 0 {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, ErrNoMessage
		}
	}
}

// FetchReady returns the next delivery, waiting at most maxWait for it
// (ErrNoMessage), and with it up to n-1 more, but only ones already waiting
// when it was sent: a stage that takes several at once (the Splunk sink
// fills a request with them) needs two pull requests for n deliveries
// instead of n, and none of them waits for a message yet to come. A pull
// request costs a subscription and its removal on both sides, ~4 % of a
// drain's CPU when made per delivery.
//
// The second pull also takes no more than pullBytes, reckoned by the first
// delivery's size (a stream's batches are cut to about the same size): the
// server sends a pull's messages at once, and when more than its pending
// limit for a client (64 MB) waits unsent to the node's one in-process
// connection, it closes that connection as a slow consumer, and what it had
// sent waits unacked for AckWait. The pull request's own byte cap
// (max_bytes) is not used: nats-server 2.15.2 sends its "409 Batch
// Completed" ahead of a replicated consumer's deliveries, which then reach
// a pull that has ended (TestClusterReplicatesAndSharesConsumers).
func (c *Consumer) FetchReady(ctx context.Context, n int, maxWait time.Duration) ([]*Delivery, error) {
	ds, err := c.Fetch(ctx, 1, maxWait)
	if err != nil || n <= 1 || ds[0].Pending == 0 {
		return ds, err
	}
	fit := max(1, c.q.pullBytes()/max(1, len(ds[0].Data))) // deliveries of the first one's size in pullBytes
	batch, err := c.cons.FetchNoWait(int(min(uint64(n-1), ds[0].Pending, uint64(fit))))
	if err != nil {
		return ds, nil // the first is the caller's; the rest comes next time
	}
	return c.take(ctx, batch, ds)
}

// take appends a pull's messages to ds, but those dead-lettered (accept).
// When ctx ended meanwhile, it gives all of ds back, as the caller is gone
// and will not handle them, and returns ctx's error.
func (c *Consumer) take(ctx context.Context, batch jetstream.MessageBatch, ds []*Delivery) ([]*Delivery, error) {
	for msg := range batch.Messages() {
		if d := c.accept(ctx, msg); d != nil {
			ds = append(ds, d)
		}
	}
	if err := ctx.Err(); err != nil {
		GiveBack(ds)
		return nil, err
	}
	return ds, nil
}

// GiveBack returns deliveries to JetStream for delivery now: to this stage
// again, to this node after a restart, or to another node.
func GiveBack(ds []*Delivery) {
	for _, d := range ds {
		_ = d.Nak(0)
	}
}

// pullSlice bounds one pull request, and so how long Fetch takes to notice
// a cancelled ctx.
const pullSlice = time.Second

// pullBytes is what one pull request may bring: twice the largest
// message (a pull with a byte cap must fit any message), and well under
// the server's 64 MB pending limit for a client.
func (q *Queue) pullBytes() int { return int(max(8<<20, 2*q.opts.MaxPayload)) }

// accept wraps a fetched message, or dead-letters it when it was delivered
// too often (nil then).
func (c *Consumer) accept(ctx context.Context, msg jetstream.Msg) *Delivery {
	d := &Delivery{Subject: msg.Subject(), header: msg.Headers(), Data: msg.Data(), msg: msg, c: c}
	d.ID = d.header.Get(batch.HeaderMsgID)
	if md, err := msg.Metadata(); err == nil {
		d.Delivered, d.Seq, d.Time, d.Pending = md.NumDelivered, md.Sequence.Stream, md.Timestamp, md.NumPending
	}
	if d.Delivered > 1 {
		c.q.metrics.redelivered.WithLabelValues(c.cfg.Stream, c.cfg.Durable).Inc()
	}
	if c.cfg.MaxDeliveries > 0 && d.Delivered > uint64(c.cfg.MaxDeliveries) {
		reason := fmt.Sprintf("delivered %d times without being acked (the %s stage crashed or timed out on it each time)", d.Delivered-1, c.cfg.Stage)
		if err := c.q.DeadLetterBatch(ctx, c.cfg.Stage, c.cfg.Name, d, reason); err != nil {
			c.q.log.Error("dead-lettering an undeliverable batch failed; it stays", "batch", d.ID, "err", err)
			_ = d.Nak(time.Second)
			return nil
		}
		_ = d.Ack()
		return nil
	}
	return d
}

// Close releases the consumer. Deliveries a stage holds unacked come back
// after AckWait, or at once if the stage Naks them.
func (c *Consumer) Close() {}

// ConsumerInfo is JetStream's view of a consumer, what stages and tests read.
type ConsumerInfo struct {
	Name           string
	NumPending     uint64 // messages not yet delivered
	NumAckPending  int    // delivered and not yet acked
	NumRedelivered int
	NumWaiting     int    // pull requests waiting
	Delivered      uint64 // stream sequence of the last delivery
	AckFloor       uint64 // stream sequence up to which everything is acked
}

// Info returns JetStream's view of the consumer (pending, ack floor).
func (c *Consumer) Info(ctx context.Context) (*ConsumerInfo, error) {
	ci, err := c.cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	return &ConsumerInfo{
		Name: ci.Name, NumPending: ci.NumPending, NumAckPending: ci.NumAckPending, NumRedelivered: ci.NumRedelivered,
		NumWaiting: ci.NumWaiting, Delivered: ci.Delivered.Stream, AckFloor: ci.AckFloor.Stream,
	}, nil
}
