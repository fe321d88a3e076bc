package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/rego"
)

// Options are what a node is given besides its config.
type Options struct {
	Logger *slog.Logger
	// Registry receives every metric of the node; default a new one.
	Registry *prometheus.Registry
	// Components builds the node's actors once the queue runs (see
	// components.go); tests and dev mode may pass their own.
	Components ComponentBuilder
	// DataDirLock is the data dir's lock when the caller took it already
	// (dev mode, whose stand-ins keep files there too); without it Run
	// takes it and releases it when it returns.
	DataDirLock *DataDirLock
}

// ComponentBuilder adds the actors of a config to a runtime.
type ComponentBuilder func(ctx context.Context, n *Node) error

// Node is one running sluice: the queue, the actors and the admin server.
type Node struct {
	Config   *Config
	Log      *slog.Logger
	Registry *prometheus.Registry
	Queue    *queue.Queue
	Runtime  *actors.Runtime
	Policies *rego.Engine // nil without policies
	Ops      *ops.Manager // status, replays and the DLQ, behind /api/v1

	// readiness checks beyond the queue and the actors (the policy set).
	checks []ReadyCheck
	admin  *http.Server
	mux    *http.ServeMux
	adminL net.Listener
	tls    *tls.Config // of the admin API and the NATS client port; nil: cleartext
	build  ComponentBuilder
	ready  chan struct{}
	lock   *DataDirLock // held by the caller, or nil: Run takes it
}

// ReadyCheck is a named readiness condition; nil means ready.
type ReadyCheck struct {
	Name  string
	Check func() error
}

// New prepares a node; Run starts it.
func New(cfg *Config, opts Options) (*Node, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.Components == nil {
		opts.Components = BuildComponents
	}
	n := &Node{Config: cfg, Log: opts.Logger, Registry: opts.Registry, build: opts.Components, mux: http.NewServeMux(), ready: make(chan struct{}), lock: opts.DataDirLock}
	return n, nil
}

// AddReadyCheck adds a condition to /readyz.
func (n *Node) AddReadyCheck(name string, check func() error) {
	n.checks = append(n.checks, ReadyCheck{Name: name, Check: check})
}

// Handle adds a route to the admin HTTP server (before Run).
func (n *Node) Handle(pattern string, h http.Handler) { n.mux.Handle(pattern, h) }

// Started is closed once the queue, the admin server and the actors run.
func (n *Node) Started() <-chan struct{} { return n.ready }

// AdminAddr is where the admin HTTP server listens (after Started).
func (n *Node) AdminAddr() string { return n.adminL.Addr().String() }

// AdminURL is the admin server's base URL: https:// when node.tls is set.
func (n *Node) AdminURL() string {
	if n.tls != nil {
		return "https://" + n.AdminAddr()
	}
	return "http://" + n.AdminAddr()
}

// Run starts the queue, the admin server and the actors, and blocks until
// ctx is done; then it stops fetching, drains in-flight batches (each stage
// within the shutdown timeout), stops the sinks and the queue.
func (n *Node) Run(ctx context.Context) error {
	cfg := n.Config
	log := n.Log
	// One process per data dir: two JetStream servers on one store corrupt it.
	if n.lock == nil {
		lock, err := LockDataDir(cfg.Node.DataDir, cfg.Node.Name)
		if err != nil {
			return err
		}
		defer lock.Release()
	}
	for _, w := range cfg.Warnings() {
		log.Warn("insecure config", "field", w.Path, "line", w.Line, "warning", w.Msg)
	}
	tlsConf, err := cfg.listenerTLS()
	if err != nil {
		return err
	}
	n.tls = tlsConf
	qopts := queue.Options{
		DataDir:         cfg.Node.DataDir,
		ServerName:      cfg.Node.Name,
		Listen:          cfg.Node.NATSListen,
		ClientTLS:       tlsConf,
		Sync:            queue.Sync(cfg.Queue.Sync),
		MaxBytes:        int64(cfg.Queue.MaxBytes),
		DuplicateWindow: cfg.Queue.DuplicateWindow.D(),
		RetainDelivered: cfg.Queue.RetainDelivered.D(),
		Logger:          log,
		Metrics:         n.Registry,
	}
	// Who may do what on the NATS port (queue/auth.go).
	qopts.OperatorPassword, qopts.OperatorNkey = cfg.Node.OperatorPassword().Reveal(), cfg.Node.NATSOperatorNkey
	qopts.Protected = sluiceConsumers(cfg)
	if !cfg.Node.NATSToken.IsEmpty() {
		log.Warn("node.nats_token is deprecated: it is now the password of the NATS user " + queue.OperatorUser + "; rename it node.nats_operator_password")
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	q, cl, stopBuffer, err := startBuffer(startCtx, cfg, qopts)
	cancel()
	if err != nil {
		return fmt.Errorf("node %s: %w", cfg.Node.Name, err)
	}
	defer stopBuffer()
	n.Queue = q
	log.Info("buffer ready", "data_dir", cfg.Node.DataDir, "nats_url", q.ClientURL(), "sync", cfg.Queue.Sync, "max_bytes", cfg.Queue.MaxBytes.String())

	rt, err := actors.NewRuntime(log, n.Registry)
	if err != nil {
		return err
	}
	n.Runtime = rt
	if w := cl.Quorum(); w != nil {
		// Cut off from the quorum, the node can store nothing: its sources
		// and sinks stop, so their work goes to the nodes that can.
		rt.Gate(w, actors.StageFetch, actors.StageSink)
		n.AddReadyCheck("cluster", w.Ready)
	}
	if err := n.build(ctx, n); err != nil {
		return fmt.Errorf("node %s: %w", cfg.Node.Name, err)
	}
	return n.serve(ctx, cl)
}

// serve starts the operations API, the admin server and the actors, waits
// for ctx to end, and stops them: fetchers first, then the transform, then
// the sinks.
func (n *Node) serve(ctx context.Context, cl *cluster.Cluster) error {
	cfg, log, rt := n.Config, n.Log, n.Runtime
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	var err error
	n.Ops, err = ops.New(opsCtx, ops.Deps{Node: cfg.Node.Name, Queue: n.Queue, Cluster: cl, Logger: log, Registry: n.Registry,
		Actors: rt.Statuses, Policies: n.Policies, Sources: n.components(cfg.Sources), Sinks: n.components(cfg.Sinks),
		Insecure: cfg.InsecureSettings()})
	if err != nil {
		return fmt.Errorf("node %s: %w", cfg.Node.Name, err)
	}
	n.Ops.Mount(n.mux.Handle)
	if err := n.startAdmin(); err != nil {
		return err
	}
	defer n.stopAdmin()
	rt.Start(context.WithoutCancel(ctx))
	log.Info("node running", "node", cfg.Node.Name, "admin", n.AdminURL())
	close(n.ready)

	n.waitForStop(ctx)
	stopOps() // replays and re-drives end; what they sent stays sent
	n.Ops.Wait()
	log.Info("stopping: fetchers first, then transform, then sinks", "timeout_per_stage", cfg.Node.ShutdownTimeout.String())
	if err := rt.Stop(cfg.Node.ShutdownTimeout.D()); err != nil {
		log.Error("stop", "err", err)
	}
	return nil
}

// waitForStop returns when ctx ends; meanwhile SIGHUP reloads the policies.
func (n *Node) waitForStop(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if n.Policies != nil {
				n.Log.Info("SIGHUP: reloading policies")
				_ = n.Policies.Reload() // a failure keeps the old set and shows on /readyz
			}
		}
	}
}

// Ready is nil when the queue takes writes, every actor runs and every
// extra check passes.
func (n *Node) Ready() error {
	var errs []error
	if n.Queue == nil {
		return errors.New("queue not started")
	}
	if err := n.Queue.Ready(); err != nil {
		errs = append(errs, err)
	}
	if n.Runtime != nil {
		if err := n.Runtime.Ready(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range n.checks {
		if err := c.Check(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// sluiceConsumers names the durable consumers sluice makes (the transform's
// on RAW, each configured sink's on OUT), which an operator on the NATS
// port may not touch.
func sluiceConsumers(cfg *Config) []string {
	names := []string{"transform"}
	for _, s := range cfg.Sinks {
		names = append(names, "sink-"+s.Name)
	}
	return names
}
