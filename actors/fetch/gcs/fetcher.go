package gcs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/storage"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/rego"
)

// Deps are what a fetcher is given.
type Deps struct {
	Queue    *queue.Queue
	Logger   *slog.Logger
	Metrics  prometheus.Registerer // already labelled with the source's name
	Policies *rego.Engine          // asked for data.event.src unless the config fixes a schema
	// ClientOptions are added to both Google clients (tests, custom endpoints).
	ClientOptions []option.ClientOption
}

// Fetcher is one GCS source actor.
type Fetcher struct {
	cfg   *Config
	deps  Deps
	log   *slog.Logger
	m     *metrics
	fails atomic.Int64 // consecutive notifications that failed, for the nack backoff
}

// New builds a fetcher; Run runs it.
func New(cfg *Config, deps Deps) (*Fetcher, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("source %q: %w", cfg.Name, err)
	}
	if cfg.Schema == "" && deps.Policies == nil {
		return nil, fmt.Errorf("source %q: no schema set and no policies loaded to ask (policies.dir)", cfg.Name)
	}
	if deps.Queue != nil {
		if err := cfg.fitsMessages(int64(deps.Queue.Options().MaxPayload)); err != nil {
			return nil, fmt.Errorf("source %q: %w", cfg.Name, err)
		}
	}
	deps.Logger, deps.Metrics = actors.Defaults(deps.Logger, deps.Metrics)
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("source %q: metrics: %w", cfg.Name, err)
	}
	return &Fetcher{cfg: cfg, deps: deps, log: deps.Logger.With("source", cfg.Name), m: m}, nil
}

// subscriptionName is the subscription's full resource name.
func (f *Fetcher) subscriptionName() string {
	if strings.HasPrefix(f.cfg.Subscription, "projects/") {
		return f.cfg.Subscription
	}
	return "projects/" + f.cfg.Project + "/subscriptions/" + f.cfg.Subscription
}

// Run receives notifications until ctx ends. The Google clients honour
// PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST as they always do.
func (f *Fetcher) Run(ctx context.Context, h *actors.Health) error {
	opts := append([]option.ClientOption(nil), f.deps.ClientOptions...)
	if f.cfg.CredentialsFile != "" {
		opts = append(opts, option.WithAuthCredentialsFile(option.ServiceAccount, f.cfg.CredentialsFile))
	}
	ps, err := pubsub.NewClient(ctx, f.cfg.Project, opts...)
	if err != nil {
		return f.unhealthy(h, fmt.Errorf("source %q: pubsub client: %w", f.cfg.Name, err))
	}
	defer ps.Close()
	gcs, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return f.unhealthy(h, fmt.Errorf("source %q: storage client: %w", f.cfg.Name, err))
	}
	defer gcs.Close()

	name := f.subscriptionName()
	sub, err := ps.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			err = fmt.Errorf("subscription %s does not exist: create a pull subscription on the bucket's notification topic", name)
		}
		return f.unhealthy(h, fmt.Errorf("source %q: %w", f.cfg.Name, err))
	}
	if sub.GetPushConfig().GetPushEndpoint() != "" {
		return f.unhealthy(h, fmt.Errorf("source %q: subscription %s is a push subscription; sluice needs a pull subscription", f.cfg.Name, name))
	}
	ackDeadline := time.Duration(max(sub.GetAckDeadlineSeconds(), 10)) * time.Second

	r := &reader{f: f, gcs: gcs}
	s := ps.Subscriber(name)
	s.ReceiveSettings = pubsub.ReceiveSettings{
		MaxExtension:               f.cfg.MaxExtension.D(),
		MaxDurationPerAckExtension: f.cfg.LeasePeriod.D(),
		MaxOutstandingMessages:     f.cfg.MaxObjectsInFlight,
		MaxOutstandingBytes:        64 << 20,
		NumGoroutines:              1,
		// On stop, what is being read goes back to Pub/Sub at once rather
		// than waiting out its lease.
		ShutdownOptions: &pubsub.ShutdownOptions{Behavior: pubsub.ShutdownBehaviorNackImmediately, Timeout: 10 * time.Second},
	}
	// Dead-lettered notifications come back here when re-driven; one
	// queue group over the cluster, so one node handles each.
	redrive, err := f.deps.Queue.Conn().QueueSubscribe(RedriveSubject(f.cfg.Name), "sluice", func(msg *nats.Msg) { r.redrive(ctx, h, msg) })
	if err != nil {
		return f.unhealthy(h, fmt.Errorf("source %q: subscribe to %s: %w", f.cfg.Name, RedriveSubject(f.cfg.Name), err))
	}
	defer func() { _ = redrive.Unsubscribe() }()
	h.SetHealthy()
	f.log.Info("receiving bucket notifications", "subscription", name, "ack_deadline", ackDeadline)
	err = s.Receive(ctx, func(mctx context.Context, m *pubsub.Message) {
		f.m.begin(m.ID)
		defer f.m.end(m.ID)
		start := time.Now()
		err := r.handle(mctx, h, delivery{attrs: m.Attributes, data: m.Data, id: m.ID})
		f.m.extensions.Add(float64(time.Since(start) / ackDeadline))
		if err == nil {
			m.Ack()
		} else {
			r.failed(mctx, h, err)
			f.m.notifications.WithLabelValues("nacked").Inc()
			m.Nack()
		}
	})
	if ctx.Err() != nil {
		return nil
	}
	return f.unhealthy(h, fmt.Errorf("source %q: receive from %s: %w", f.cfg.Name, name, err))
}

func (f *Fetcher) unhealthy(h *actors.Health, err error) error {
	h.SetUnhealthy(err.Error())
	return err
}

// waitBeforeNack waits before a nack, longer after each failure in a row (of
// every notification's), so a full RAW or a failing GCS is not hammered by
// immediate redeliveries.
func (f *Fetcher) waitBeforeNack(ctx context.Context) {
	actors.Sleep(ctx, backoff.Nth(int(f.fails.Add(1)), 200*time.Millisecond, 30*time.Second))
}

var errDeleted = errors.New("object no longer exists")
