// Package queue is sluice's durable buffer: an embedded NATS JetStream server,
// the streams RAW, OUT and DLQ, publish-and-wait and pull-and-ack.
package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// Sync is how often JetStream flushes stream files to disk.
type Sync string

const (
	// SyncInterval lets JetStream fsync every two minutes (its default); a
	// power loss can lose acknowledged records written since the last sync,
	// a process crash cannot (the OS page cache survives it).
	SyncInterval Sync = "interval"
	// SyncAlways fsyncs every write before the ack: a power loss loses
	// nothing acknowledged, at a large cost in throughput.
	SyncAlways Sync = "always"
)

// Options configure the embedded buffer. Zero values are sensible defaults.
type Options struct {
	DataDir    string // required: JetStream's store lives in DataDir/jetstream
	ServerName string // default: hostname
	// Listen is the client listener (host:port) for the nats CLI; default
	// 127.0.0.1 with a random port.
	Listen string
	// OperatorPassword is the password of OperatorUser, as whom every
	// client of the listener logs in (auth.go); empty lets clients in as
	// that user without one (unless OperatorNkey is set).
	OperatorPassword string
	// OperatorNkey, when set, is a public user nkey (U…) that also logs
	// in as the operator, signing with its seed: the node holds no secret.
	OperatorNkey string
	// Protected names sluice's own durable consumers (on any stream): the
	// operator can neither change, delete, pull from nor ack on them.
	Protected []string
	// ClientTLS, when set, makes the client listener TLS only (a client
	// certificate is required when its ClientAuth says so). The node's own
	// in-process connection does not use it.
	ClientTLS       *tls.Config
	Sync            Sync
	MaxBytes        int64         // all streams together; default 1 GiB
	Replicas        int           // default 1
	DuplicateWindow time.Duration // message-ID dedup window; default 10m
	RetainDelivered time.Duration // replay window of delivered records; default 72h
	// MaxPayload caps one message; default 8 MiB (batches aim for 64–256 KB).
	MaxPayload int32
	// PublishInFlight bounds async publishes awaiting their ack; default 256.
	PublishInFlight int
	// Configure, when set, adds to the embedded server's options before it
	// starts: cluster.Start sets the route listener, the routes, their TLS
	// and the cluster name there. A server with a route listener is a node
	// of a cluster: Ready and publish errors then speak of its quorum.
	Configure func(*server.Options) error
	Logger    *slog.Logger
	Metrics   prometheus.Registerer

	// trimLookupWait bounds the trimmer's wait for the answer to "which is
	// the first record stored since the replay window began"; default
	// apiTimeout. Without an answer the subject waits for the next round.
	// Tests shorten it to make the answer not come.
	trimLookupWait time.Duration
	// passwordCost is the bcrypt cost of the operator password's hash;
	// default bcrypt.DefaultCost. Tests lower it: the race detector makes
	// each login take seconds.
	passwordCost int
}

func (o *Options) setDefaults() error {
	if o.DataDir == "" {
		return errors.New("queue: DataDir is required")
	}
	if o.ServerName == "" {
		h, _ := os.Hostname()
		o.ServerName = h
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:-1"
	}
	switch o.Sync {
	case "":
		o.Sync = SyncInterval
	case SyncInterval, SyncAlways:
	default:
		return fmt.Errorf("queue: sync %q: want %q or %q", o.Sync, SyncInterval, SyncAlways)
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 10 * time.Minute
	}
	if o.RetainDelivered <= 0 {
		o.RetainDelivered = 72 * time.Hour
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 8 << 20
	}
	if o.PublishInFlight <= 0 {
		o.PublishInFlight = 256
	}
	if o.passwordCost <= 0 {
		o.passwordCost = bcrypt.DefaultCost
	}
	if o.trimLookupWait <= 0 {
		o.trimLookupWait = apiTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	return nil
}

// Queue is a running embedded JetStream server with sluice's streams.
type Queue struct {
	opts    Options
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	metrics *metrics

	mu        sync.Mutex
	consumers []*Consumer
	stopTrim  context.CancelFunc
	trimDone  chan struct{}
	trimSoon  chan struct{} // a publish found a stream full: trim now, not at the next tick
	// clustered: the server has a route listener, so its streams are
	// replicated and take writes only with a quorum of their replicas.
	clustered bool
}

// Start runs the embedded server, waits until JetStream is ready and creates
// or updates the streams.
func Start(ctx context.Context, opts Options) (*Queue, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	auth, err := newClientAuth(opts)
	if err != nil {
		return nil, err
	}
	sopts, err := serverOptions(opts, auth)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("queue: new server: %w", err)
	}
	srv.SetLoggerV2(newServerLogger(opts.Logger), false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("queue: embedded NATS server not ready after 30s")
	}
	q := &Queue{opts: opts, srv: srv, log: opts.Logger, clustered: sopts.Cluster.Port != 0}
	if err := q.connect(auth.node); err != nil {
		q.Close()
		return nil, err
	}
	if q.metrics, err = newMetrics(opts.Metrics, q); err != nil {
		q.Close()
		return nil, err
	}
	if err := q.ensureStreams(ctx); err != nil {
		q.Close()
		return nil, err
	}
	trimCtx, cancel := context.WithCancel(context.Background())
	q.stopTrim, q.trimDone, q.trimSoon = cancel, make(chan struct{}), make(chan struct{}, 1)
	go q.trimLoop(trimCtx)
	return q, nil
}

// serverOptions are the embedded server's: the client listener, the store,
// who may log in, client TLS, and whatever opts.Configure adds.
func serverOptions(opts Options, auth clientAuth) (*server.Options, error) {
	host, portStr, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("queue: listen %q: %w", opts.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("queue: listen %q: bad port", opts.Listen)
	}
	storeDir := filepath.Join(opts.DataDir, "jetstream")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, fmt.Errorf("queue: data dir: %w", err)
	}
	sopts := &server.Options{
		ServerName:         opts.ServerName,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           storeDir,
		JetStreamMaxStore:  serverMaxStore(storeDir, opts.MaxBytes), // the streams' own limits add up to MaxBytes
		JetStreamMaxMemory: 64 << 20,                                // sluice keeps nothing in memory streams
		MaxPayload:         opts.MaxPayload,
		SyncAlways:         opts.Sync == SyncAlways,
		NoSigs:             true,
		NoLog:              true,
		Users:              auth.users,
		Nkeys:              auth.nkeys,
		NoAuthUser:         auth.noAuthUser,
	}
	if opts.ClientTLS != nil {
		sopts.TLSConfig = opts.ClientTLS.Clone() // the server may add to it
		sopts.TLS = true
		sopts.TLSVerify = opts.ClientTLS.ClientAuth == tls.RequireAndVerifyClientCert
		sopts.TLSTimeout = 5 // seconds, as routes: a loaded node is slow to handshake
	}
	if opts.Configure != nil {
		if err := opts.Configure(sopts); err != nil {
			return nil, err
		}
	}
	return sopts, nil
}

// connect opens the node's in-process connection and its JetStream context.
func (q *Queue) connect(as nats.Option) error {
	nc, err := nats.Connect("", nats.InProcessServer(q.srv), nats.Name("sluice-"+q.opts.ServerName), nats.MaxReconnects(-1), as,
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			q.log.Warn("nats client", "subject", subject, "err", err)
		}))
	if err != nil {
		return fmt.Errorf("queue: connect in-process: %w", err)
	}
	q.nc = nc
	// A publish whose ack is lost (a partition cut the route to the stream
	// leader mid-request) must fail, not wait forever: the source then
	// retries the same message ID, which JetStream stores once.
	q.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(q.opts.PublishInFlight), jetstream.WithPublishAsyncTimeout(publishAckTimeout))
	if err != nil {
		return fmt.Errorf("queue: jetstream: %w", err)
	}
	return nil
}

// publishAckTimeout bounds the wait for one publish's ack.
const publishAckTimeout = 20 * time.Second

// ClientURL is where the nats CLI reaches the embedded server.
func (q *Queue) ClientURL() string { return q.srv.ClientURL() }

// Conn is the node's in-process client connection.
func (q *Queue) Conn() *nats.Conn { return q.nc }

// JetStream is the node's JetStream context, for admin reads (replay, status).
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Server is the embedded server, for status and cluster checks.
func (q *Queue) Server() *server.Server { return q.srv }

// Options returns the options the queue runs with, defaults filled in.
func (q *Queue) Options() Options { return q.opts }

// Ready reports whether JetStream can take writes now.
func (q *Queue) Ready() error {
	if !q.nc.IsConnected() {
		return errors.New("queue: client not connected")
	}
	if !q.srv.JetStreamEnabled() {
		return errors.New("queue: JetStream not enabled")
	}
	if !q.clustered {
		return nil
	}
	if !q.srv.JetStreamIsCurrent() {
		return errors.New("queue: JetStream cluster has no current meta leader")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range streamShares {
		info, err := q.StreamInfo(ctx, s.name)
		if err != nil {
			return fmt.Errorf("queue: stream %s: %w", s.name, err)
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("queue: stream %s has no leader (a quorum of its %d replicas is not reachable)", s.name, q.opts.Replicas)
		}
	}
	return nil
}

// Close stops the trimmer, consumers, the client and the server, in that
// order.
func (q *Queue) Close() {
	if q.stopTrim != nil {
		q.stopTrim()
		<-q.trimDone
	}
	q.mu.Lock()
	cs := q.consumers
	q.consumers = nil
	q.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	if q.nc != nil {
		_ = q.nc.Drain()
		q.nc.Close()
	}
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv.WaitForShutdown()
	}
}
