package cmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/actors/sink/bigquery/bqtest"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/queue"
)

// devEpoch is when the sample logs start: fixed, so a restart over the same
// data directory regenerates the same logs the checkpoints point into.
var devEpoch = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

type devOptions struct {
	policies                 fs.FS // the default policies, copied into <data-dir>/policies once
	dataDir, admin, logLevel string
	records, shards          int
	exitWhenDelivered        bool
	timeout, splunkDownFor   time.Duration
	hecURL, hecToken         string
	source                   string // sls, gcs or both
	gcsObjects               int
}

// gcsPerObject is the number of sample records in each dev GCS object.
const gcsPerObject = 1000

func (o devOptions) sls() bool { return o.source != "gcs" }
func (o devOptions) gcs() bool { return o.source == "gcs" || o.source == "both" }

func newDevCmd(policies fs.FS) *cobra.Command {
	o := devOptions{policies: policies}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run one node on this machine with stand-ins for SLS and Splunk",
		Long: `Runs one node with its buffer in --data-dir, an SLS stand-in preloaded with sample
audit logs, the default policies, and a Splunk HEC stand-in that writes each event it
accepts to <data-dir>/hec-received.ndjson.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "", "where the buffer lives, kept between runs (default: <user cache dir>/sluice-dev)")
	f.StringVar(&o.admin, "admin", "127.0.0.1:8686", "admin HTTP address")
	f.StringVar(&o.logLevel, "log-level", "warn", "node log level")
	f.IntVar(&o.records, "records", 20000, "sample audit logs in the SLS stand-in (about 1 KB each)")
	f.IntVar(&o.shards, "shards", 4, "shards of the SLS stand-in")
	f.BoolVar(&o.exitWhenDelivered, "exit-when-delivered", false, "exit 0 once every routed record is accepted by Splunk and acked")
	f.DurationVar(&o.timeout, "timeout", 0, "with --exit-when-delivered: give up (exit 1) after this long")
	f.DurationVar(&o.splunkDownFor, "splunk-down-for", 0, "start with the HEC stand-in refusing connections for this long")
	f.StringVar(&o.hecURL, "hec-url", "", "send to this HEC instead of the stand-in")
	f.StringVar(&o.hecToken, "hec-token", "", "token for --hec-url (default $SPLUNK_HEC_TOKEN)")
	f.StringVar(&o.source, "source", "sls", "sls, gcs (GCS objects announced through Pub/Sub) or both")
	f.IntVar(&o.gcsObjects, "gcs-objects", 10, "with --source gcs or both: gzip'd JSON-lines objects of 1,000 GitHub audit records in the GCS stand-in")
	return cmd
}

func runDev(parent context.Context, stdout, stderr io.Writer, o devOptions) error {
	if parent == nil {
		parent = context.Background()
	}
	if o.dataDir == "" {
		o.dataDir = defaultDevDataDir()
	}
	// Before the stand-ins: they keep their state and output there too.
	lock, err := node.LockDataDir(o.dataDir, "dev")
	if err != nil {
		return err
	}
	defer lock.Release()
	if o.source, err = devSource(o.source); err != nil {
		return err
	}
	files, err := prepareDevDataDir(o)
	if err != nil {
		return err
	}
	si, err := startStandIns(stdout, o, files)
	if err != nil {
		return err
	}
	defer si.close()
	cfg, err := devNodeConfig(o, files, si)
	if err != nil {
		return err
	}
	log := newLogger(stderr, o.logLevel, "text")
	n, err := node.New(cfg, node.Options{Logger: log, DataDirLock: lock})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go node.ReleaseMemoryWhenIdle(ctx, log)
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()
	select {
	case <-n.Started():
	case err := <-runErr:
		return err
	}
	printDevBanner(stdout, o, n, files, si)
	return superviseDev(ctx, cancel, stdout, stderr, n, o, si.sls, runErr)
}

func defaultDevDataDir() string {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "sluice-dev")
}

// devSource checks --source; empty means sls.
func devSource(source string) (string, error) {
	switch source {
	case "":
		return "sls", nil
	case "sls", "gcs", "both":
		return source, nil
	default:
		return "", fmt.Errorf("--source %q: want sls, gcs or both", source)
	}
}

// devFiles are what dev keeps in its data directory, and the secrets the
// config names as ${…}.
type devFiles struct {
	policies, tokenFile, cfgPath, hecFile string
	secrets                               map[string]string
}

// prepareDevDataDir copies the default policies in (once), makes fresh
// secrets, and writes the admin token where the CLI reads it.
func prepareDevDataDir(o devOptions) (*devFiles, error) {
	f := &devFiles{
		policies:  filepath.Join(o.dataDir, "policies"),
		tokenFile: filepath.Join(o.dataDir, "admin-token"),
		cfgPath:   filepath.Join(o.dataDir, "sluice.yaml"),
		hecFile:   filepath.Join(o.dataDir, "hec-received.ndjson"),
		secrets:   map[string]string{"SLUICE_DEV_SLS_KEY": randomHex(16), "SLUICE_DEV_HEC_TOKEN": randomHex(16), "SLUICE_DEV_ADMIN_TOKEN": randomHex(16)},
	}
	if err := writeDefaultPolicies(o.policies, f.policies); err != nil {
		return nil, err
	}
	// The admin API takes writes only with a token; the CLI reads it from
	// this file (--admin-token-file), never from its command line.
	if err := writeSecretFile(f.tokenFile, f.secrets["SLUICE_DEV_ADMIN_TOKEN"]); err != nil {
		return nil, err
	}
	return f, nil
}

// devNodeConfig writes the node's config, a real config file, for the
// curious, and parses it; secrets stay out of it and come in as ${…}.
func devNodeConfig(o devOptions, f *devFiles, si *devStandIns) (*node.Config, error) {
	yaml := devConfig(o, f.policies, si.sls, si.hecURL, si.bq)
	if err := os.WriteFile(f.cfgPath, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	cfg, err := node.Parse([]byte(yaml), builtin.Registry(), func(k string) (string, bool) { v, ok := f.secrets[k]; return v, ok })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.cfgPath, err)
	}
	return cfg, nil
}

func printDevBanner(w io.Writer, o devOptions, n *node.Node, f *devFiles, si *devStandIns) {
	flags := devAdminFlags(n.AdminAddr(), f.tokenFile)
	fmt.Fprintf(w, `sluice dev
  data dir     %s (kept between runs; remove it to start over)
  config       %s
  admin        http://%s  (/healthz /readyz; /metrics and /api/v1 want the bearer token in %s)
  nats         %s  (e.g. nats --server %s stream ls)
%s  Splunk HEC   %s
  HEC events   %s
  policies     %s  (sluice policy test %s)

  in another terminal:
    sluice status --watch%s
    sluice replay --sink splunk --from -10m --dry-run%s
    sluice dlq list%s
    sluice dlq redrive --dry-run%s
`, o.dataDir, f.cfgPath, n.AdminAddr(), f.tokenFile, n.Queue.ClientURL(), n.Queue.ClientURL(), standInLines(o, si.sls, si.gcs, si.bq), si.hecURL, hecFileOr(si.hec, f.hecFile), f.policies, f.policies,
		flags, flags, flags, flags)
	if o.splunkDownFor > 0 && si.hec != nil {
		fmt.Fprintf(w, "  Splunk is down for the first %s: fetching and buffering go on, delivery resumes after.\n", o.splunkDownFor)
	}
}

// superviseDev shows progress until the node stops, dev is interrupted,
// or (with --exit-when-delivered) everything is delivered or --timeout
// passes; then it stops the node and says how it ended.
func superviseDev(ctx context.Context, cancel context.CancelFunc, stdout, stderr io.Writer, n *node.Node, o devOptions, sls *slstest.Server, runErr <-chan error) error {
	p := newProgress(n, stderr)
	var deadline <-chan time.Time
	if o.timeout > 0 {
		deadline = time.After(o.timeout)
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var result error
loop:
	for {
		select {
		case err := <-runErr:
			p.final(stdout)
			return err
		case <-ctx.Done():
			break loop
		case <-deadline:
			result = fmt.Errorf("not everything was delivered within %s: %s", o.timeout, drainState(ctx, n, o, sls))
			break loop
		case <-tick.C:
			p.tick()
			if o.exitWhenDelivered && delivered(ctx, n, o, sls) {
				break loop
			}
		}
	}
	cancel()
	if err := <-runErr; err != nil && result == nil {
		result = err
	}
	p.final(stdout)
	if result == nil && o.exitWhenDelivered {
		if o.gcs() {
			fmt.Fprintln(stdout, "every routed record was accepted by Splunk or BigQuery and acked")
		} else {
			fmt.Fprintln(stdout, "every routed record was accepted by Splunk and acked")
		}
	}
	return result
}

func devConfig(o devOptions, policies string, sls *slstest.Server, hecURL string, bq *bqtest.Server) string {
	var sources strings.Builder
	if sls != nil {
		fmt.Fprintf(&sources, `  - name: audit
    type: sls
    endpoint: %s
    project: dev
    logstore: audit
    consumer_group: sluice-dev
    access_key_id: dev-key-id
    access_key_secret: ${SLUICE_DEV_SLS_KEY}
    start: begin
    heartbeat_interval: 2s
    fetch_interval: 50ms
    checkpoint_interval: 1s
`, sls.Endpoint)
	}
	var sinks string
	if o.gcs() {
		// Found through PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST; the
		// event policy picks Swarm's github_audit schema, whose rows go to
		// BigQuery.
		sources.WriteString(`  - name: github
    type: gcs
    project: sluice-dev
    subscription: sluice
    lease_period: 10s
`)
		sinks = fmt.Sprintf(`  - name: bigquery
    type: bigquery
    project: sluice-dev
    endpoint: %s
    write_endpoint: %s
    max_backoff: 2s
`, bq.URL, bq.GRPCAddr)
	}
	return fmt.Sprintf(`# Written by sluice dev; regenerated on every run.
node:
  name: dev
  data_dir: %q
  admin_listen: %q
  admin_token: ${SLUICE_DEV_ADMIN_TOKEN}
  nats_listen: 127.0.0.1:-1
  log_level: %s
  shutdown_timeout: 10s
queue:
  max_bytes: 4GiB
  retain_delivered: 72h
  sync: interval
policies:
  dir: %q
transform:
  ack_wait: 5s
sources:
%ssinks:
  - name: splunk
    type: splunk_hec
    url: %s
    token: ${SLUICE_DEV_HEC_TOKEN}
    index: main
    sourcetype: sls:audit
    max_backoff: 2s
    timeout: 5s
    ack_wait: 10s
%s`, o.dataDir, o.admin, o.logLevel, policies, sources.String(), hecURL, sinks)
}

// writeDefaultPolicies copies the shipped policies into dir unless it
// exists, so edits made there survive restarts.
func writeDefaultPolicies(policies fs.FS, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if policies == nil {
		return errors.New("dev: this build has no default policies")
	}
	return os.CopyFS(dir, policies)
}

// delivered: every SLS shard's checkpoint is at its end and every GCS
// record is in RAW (so everything was read), the transform and the sink
// have their consumers, and neither has anything waiting or unacked.
func delivered(ctx context.Context, n *node.Node, o devOptions, sls *slstest.Server) bool {
	if sls != nil {
		for i := 0; i < o.shards; i++ {
			if sls.CheckpointPosition("sluice-dev", i) != int64(sls.LogGroups(i)) {
				return false
			}
		}
	}
	if o.gcs() && node.MetricSum(n.Registry, "sluice_gcs_records_total", nil) < float64(o.gcsObjects*gcsPerObject) {
		return false
	}
	js := n.Queue.JetStream()
	if _, err := js.Consumer(ctx, queue.StreamRaw, "transform"); err != nil {
		return false
	}
	if _, err := js.Consumer(ctx, queue.StreamOut, "sink-splunk"); err != nil {
		return false
	}
	if _, err := js.Consumer(ctx, queue.StreamOut, "sink-bigquery"); o.gcs() && err != nil {
		return false
	}
	idle, err := n.Queue.Idle(ctx)
	return err == nil && idle
}

func drainState(ctx context.Context, n *node.Node, o devOptions, sls *slstest.Server) string {
	var parts []string
	if sls != nil {
		for i := 0; i < o.shards; i++ {
			if p, end := sls.CheckpointPosition("sluice-dev", i), int64(sls.LogGroups(i)); p != end {
				parts = append(parts, fmt.Sprintf("SLS shard %d checkpoint at log group %d of %d", i, max(p, 0), end))
			}
		}
	}
	if o.gcs() {
		if got, want := node.MetricSum(n.Registry, "sluice_gcs_records_total", nil), o.gcsObjects*gcsPerObject; got < float64(want) {
			parts = append(parts, fmt.Sprintf("GCS: %.0f of %d records read", got, want))
		}
	}
	if idle, _ := n.Queue.Idle(ctx); !idle {
		parts = append(parts, "RAW or OUT still holds undelivered records")
	}
	if err := n.Ready(); err != nil {
		parts = append(parts, "not ready: "+strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if len(parts) == 0 {
		return "the pipeline looked drained at the last check"
	}
	return strings.Join(parts, "; ")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// devAdminFlags are the flags the operations commands need to reach addr
// (none when it is their default) with the token in tokenFile.
func devAdminFlags(addr, tokenFile string) string {
	s := " --admin-token-file " + shellQuote(tokenFile)
	if addr == "127.0.0.1:8686" {
		return s
	}
	return " --admin " + addr + s
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9/._+:,@%-]+$`)

// writeSecretFile replaces path with a file only its owner can read. It
// removes the old one first: WriteFile would keep a looser mode.
func writeSecretFile(path, secret string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
