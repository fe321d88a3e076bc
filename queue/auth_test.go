package queue

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// operator is a NATS client on the queue's TCP listener, as the nats CLI
// would be: it records the permission violations the server reports.
type operator struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu         sync.Mutex
	violations []string
}

func connectOperator(t *testing.T, q *Queue, opts ...nats.Option) *operator {
	t.Helper()
	o := &operator{}
	opts = append(opts, nats.Timeout(10*time.Second), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			o.mu.Lock()
			o.violations = append(o.violations, err.Error())
			o.mu.Unlock()
		}
	}))
	nc, err := nats.Connect(q.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("operator connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	o.nc, o.js = nc, js
	return o
}

// refused waits for the server to report a permission violation naming
// subject (a publish the server drops is refused asynchronously).
func (o *operator) refused(t *testing.T, subject string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		for _, v := range o.violations {
			if strings.Contains(v, `"`+subject+`"`) {
				o.mu.Unlock()
				return
			}
		}
		o.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	t.Fatalf("no permission violation for %s; got %q", subject, o.violations)
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const testOperatorPassword = "op-s3cret"

// operatorQueue starts a queue with an operator password, a record in RAW
// and sluice's transform consumer holding it delivered and not yet acked.
func operatorQueue(t *testing.T) (*Queue, *Delivery, *operator) {
	t.Helper()
	q := startQueue(t, t.TempDir(), func(o *Options) {
		o.OperatorPassword, o.passwordCost = testOperatorPassword, bcrypt.MinCost
		o.Protected = []string{"transform", "sink-splunk"}
	})
	t.Cleanup(q.Close)
	ctx := context.Background()
	if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", "id-1", `{"x":1}`)}); err != nil {
		t.Fatalf("the node's own connection publishes: %v", err)
	}
	c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Next(ctx, 5*time.Second)
	if err != nil {
		t.Fatalf("the node's own connection pulls: %v", err)
	}
	return q, d, connectOperator(t, q, nats.UserInfo(OperatorUser, testOperatorPassword))
}

func ackPending(t *testing.T, q *Queue, stream, durable string) int {
	t.Helper()
	c, err := q.js.Consumer(context.Background(), stream, durable)
	if err != nil {
		t.Fatalf("consumer %s: %v", durable, err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending
}

// The operator cannot purge, delete or change a stream.
func TestOperatorCannotPurgeDeleteOrChangeStreams(t *testing.T) {
	q, _, op := operatorQueue(t)
	s, err := op.js.Stream(shortCtx(t), StreamRaw)
	if err != nil {
		t.Fatalf("operator reads stream info: %v", err)
	}
	if err := s.Purge(shortCtx(t)); err == nil {
		t.Fatal("operator purged RAW")
	}
	op.refused(t, "$JS.API.STREAM.PURGE.RAW")
	if err := op.js.DeleteStream(shortCtx(t), StreamOut); err == nil {
		t.Fatal("operator deleted OUT")
	}
	op.refused(t, "$JS.API.STREAM.DELETE.OUT")
	cfg := q.streamConfig(StreamRaw, "raw.>", 0.30)
	cfg.MaxBytes = 1 << 20
	if _, err := op.js.UpdateStream(shortCtx(t), cfg); err == nil {
		t.Fatal("operator updated RAW")
	}
	op.refused(t, "$JS.API.STREAM.UPDATE.RAW")
	if _, err := op.js.CreateStream(shortCtx(t), jetstream.StreamConfig{Name: "MINE", Subjects: []string{"mine.>"}}); err == nil {
		t.Fatal("operator created a stream")
	}
	if n := streamMsgs(t, q, StreamRaw); n != 1 {
		t.Fatalf("RAW holds %d messages, want 1", n)
	}
}

// The operator cannot delete, change or pull from sluice's consumers.
func TestOperatorCannotTouchSluiceConsumers(t *testing.T) {
	q, _, op := operatorQueue(t)
	if err := op.js.DeleteConsumer(shortCtx(t), StreamRaw, "transform"); err == nil {
		t.Fatal("operator deleted the transform consumer")
	}
	op.refused(t, "$JS.API.CONSUMER.DELETE.RAW.transform")
	if _, err := op.js.UpdateConsumer(shortCtx(t), StreamRaw, jetstream.ConsumerConfig{
		Durable: "transform", FilterSubject: "raw.a", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
	}); err == nil {
		t.Fatal("operator updated the transform consumer")
	}
	op.refused(t, "$JS.API.CONSUMER.CREATE.RAW.transform.raw.a")
	// A sink's consumer is protected before sluice makes it.
	if _, err := op.js.CreateOrUpdateConsumer(shortCtx(t), StreamOut, jetstream.ConsumerConfig{Durable: "sink-splunk", AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
		t.Fatal("operator created sink-splunk")
	}
	op.refused(t, "$JS.API.CONSUMER.CREATE.OUT.sink-splunk")
	// The legacy create, whose name travels in the body.
	if _, err := op.nc.Request("$JS.API.CONSUMER.CREATE.RAW", []byte(`{"stream_name":"RAW","config":{"name":"transform","ack_policy":"none"}}`), time.Second); err == nil {
		t.Fatal("operator sent a legacy consumer create")
	}
	op.refused(t, "$JS.API.CONSUMER.CREATE.RAW")

	// Pull from it: a second record would be handed to the operator.
	if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "id-2", `{"x":2}`)}); err != nil {
		t.Fatal(err)
	}
	c, err := op.js.Consumer(shortCtx(t), StreamRaw, "transform")
	if err != nil {
		t.Fatalf("operator reads consumer info: %v", err)
	}
	msgs, err := c.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err == nil {
		for m := range msgs.Messages() {
			t.Fatalf("operator pulled seq from transform: %s", m.Subject())
		}
	}
	op.refused(t, "$JS.API.CONSUMER.MSG.NEXT.RAW.transform")
	info, err := c.Info(shortCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAckPending == 1 || info.Config.FilterSubject != "raw.>" || info.Delivered.Consumer != 1 {
		t.Fatalf("transform consumer changed: filter %q, max ack pending %d, delivered %d", info.Config.FilterSubject, info.Config.MaxAckPending, info.Delivered.Consumer)
	}
}

// An ack is a publish to the delivery's reply subject: the server refuses
// it and the record stays pending for sluice.
func TestOperatorCannotAckOnSluiceConsumers(t *testing.T) {
	q, d, op := operatorQueue(t)
	reply := d.msg.Reply()
	if !strings.HasPrefix(reply, "$JS.ACK.") {
		t.Fatalf("reply subject %q", reply)
	}
	if err := op.nc.Publish(reply, []byte("+ACK")); err != nil {
		t.Fatal(err)
	}
	if err := op.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	op.refused(t, reply)
	if n := ackPending(t, q, StreamRaw, "transform"); n != 1 {
		t.Fatalf("transform has %d pending acks after the operator's ack, want 1", n)
	}
	if err := d.Ack(); err != nil {
		t.Fatalf("sluice acks its own delivery: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ackPending(t, q, StreamRaw, "transform") != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sluice's own ack did not take")
		}
	}
}

// The operator cannot publish records, nor write into sluice's buckets.
func TestOperatorCannotPublishIntoSluiceSubjects(t *testing.T) {
	q, _, op := operatorQueue(t)
	for _, subj := range []string{"raw.a", "out.splunk", "dlq.transform.transform", "$KV.sluice_holds.x"} {
		if err := op.nc.Publish(subj, []byte(`{"forged":true}`)); err != nil {
			t.Fatal(err)
		}
		op.refused(t, subj)
	}
	if _, err := op.js.Publish(shortCtx(t), "raw.a", []byte(`{"forged":true}`)); err == nil {
		t.Fatal("operator's JetStream publish to raw.a was acked")
	}
	for _, s := range []string{StreamRaw, StreamOut, StreamDLQ} {
		want := uint64(0)
		if s == StreamRaw {
			want = 1
		}
		if n := streamMsgs(t, q, s); n != want {
			t.Fatalf("%s holds %d messages, want %d", s, n, want)
		}
	}
}

// The operator reads: stream and consumer info, messages through an
// ordered consumer, single messages; and it can use a durable of its own
// (nats consumer add), which it may ack on and delete.
func TestOperatorReadsStreamsAndUsesItsOwnConsumers(t *testing.T) {
	_, _, op := operatorQueue(t)
	ctx := shortCtx(t)
	s, err := op.js.Stream(ctx, StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream info: %v, %+v", err, info)
	}
	if _, err := op.js.AccountInfo(ctx); err != nil {
		t.Fatalf("account info: %v", err)
	}
	names := op.js.StreamNames(ctx)
	n := 0
	for range names.Name() {
		n++
	}
	if names.Err() != nil || n < 3 {
		t.Fatalf("stream names: %d, %v", n, names.Err())
	}
	if _, err := s.GetMsg(ctx, 1); err != nil {
		t.Fatalf("direct get: %v", err)
	}
	if _, err := s.Consumer(ctx, "transform"); err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	m, err := oc.Next(jetstream.FetchMaxWait(2 * time.Second))
	if err != nil {
		t.Fatalf("ordered consumer read: %v", err)
	}
	if m.Subject() != "raw.a" {
		t.Fatalf("read %s", m.Subject())
	}

	own, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "debug", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("own durable: %v", err)
	}
	m, err = own.Next(jetstream.FetchMaxWait(2 * time.Second))
	if err != nil {
		t.Fatalf("own durable read: %v", err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatalf("own durable ack: %v", err)
	}
	if err := s.DeleteConsumer(ctx, "debug"); err != nil {
		t.Fatalf("own durable delete: %v", err)
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	if len(op.violations) > 0 {
		t.Fatalf("permission violations while reading: %q", op.violations)
	}
}

// With an operator password, the listener refuses clients without it or
// with another; the node's own in-process connection has a credential of
// its own, which no TCP client can use.
func TestOperatorPasswordGuardsTheListener(t *testing.T) {
	var logs syncBuffer
	q := startQueue(t, t.TempDir(), func(o *Options) {
		o.OperatorPassword, o.passwordCost = testOperatorPassword, bcrypt.MinCost
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	defer q.Close()
	if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "id-1", "r")}); err != nil {
		t.Fatalf("the node's own connection: %v", err)
	}
	for _, opt := range []nats.Option{nil, nats.UserInfo(OperatorUser, "wrong"), nats.Token(testOperatorPassword)} {
		var opts []nats.Option
		if opt != nil {
			opts = append(opts, opt)
		}
		if nc, err := nats.Connect(q.ClientURL(), append(opts, nats.Timeout(10*time.Second))...); err == nil {
			nc.Close()
			t.Fatal("a client without the operator's password connected")
		}
	}
	nc, err := nats.Connect(q.ClientURL(), nats.UserInfo(OperatorUser, testOperatorPassword), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("a client with the password: %v", err)
	}
	nc.Close()
	// The server holds a bcrypt hash, not the password: it neither logs
	// the password nor warns about plaintext passwords.
	if l := logs.String(); strings.Contains(l, testOperatorPassword) || strings.Contains(l, "Plaintext") {
		t.Fatalf("logs:\n%s", l)
	}
}

// A password given as a bcrypt hash (nats server passwd) is used as it is.
func TestOperatorPasswordMayBeABcryptHash(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte(testOperatorPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	q := startQueue(t, t.TempDir(), func(o *Options) { o.OperatorPassword = string(h) })
	defer q.Close()
	nc, err := nats.Connect(q.ClientURL(), nats.UserInfo(OperatorUser, testOperatorPassword), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("a client with the password: %v", err)
	}
	nc.Close()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Without a password (a loopback listener), a client that sends no
// credentials is the operator: it reads, and cannot purge.
func TestNoPasswordClientIsTheOperator(t *testing.T) {
	q := startQueue(t, t.TempDir(), nil)
	defer q.Close()
	if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "id-1", "r")}); err != nil {
		t.Fatal(err)
	}
	op := connectOperator(t, q)
	s, err := op.js.Stream(shortCtx(t), StreamRaw)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if err := s.Purge(shortCtx(t)); err == nil {
		t.Fatal("a client without credentials purged RAW")
	}
	op.refused(t, "$JS.API.STREAM.PURGE.RAW")
	if n := streamMsgs(t, q, StreamRaw); n != 1 {
		t.Fatalf("RAW holds %d messages, want 1", n)
	}
}

// An operator nkey logs in as the operator, with the operator's rights;
// without it (or the password) nothing does.
func TestOperatorNkeyLogsInAsTheOperator(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	q := startQueue(t, t.TempDir(), func(o *Options) { o.OperatorNkey = pub })
	defer q.Close()
	if err := q.PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "id-1", "r")}); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(q.ClientURL(), nats.Timeout(10*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a client without the nkey connected")
	}
	op := connectOperator(t, q, nats.Nkey(pub, kp.Sign))
	s, err := op.js.Stream(shortCtx(t), StreamRaw)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if err := s.Purge(shortCtx(t)); err == nil {
		t.Fatal("the operator's nkey purged RAW")
	}
	op.refused(t, "$JS.API.STREAM.PURGE.RAW")
}
