package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
	"github.com/sluicehq/sluice/queue"
)

// chaosBench runs the real sluice binary as separate processes between an
// SLS stand-in fed continuously through the SDK producer and a HEC stand-in,
// injects faults drawn from a seed, and checks that every record produced
// reached Splunk or the DLQ.
func chaosBench(args []string) error {
	fs := flag.NewFlagSet("chaos", flag.ExitOnError)
	nodes := fs.Int("nodes", 1, "sluice nodes: 1, or 3 for a cluster with R3 streams")
	duration := fs.Duration("duration", 10*time.Minute, "how long records are written and faults injected")
	rate := fs.Float64("rate", 2, "MB/s of 1 KB audit records offered to SLS")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()%1e6), "seed of the fault schedule (printed, to repeat a run)")
	faults := fs.String("faults", "all", "faults to inject: all, none, or a list of "+strings.Join(faultKinds, ","))
	out := fs.String("out", "", "directory for the picture, the node logs and the timeline (default: a temporary one, kept)")
	maxBytes := fs.Int64("max-bytes", 0, "queue.max_bytes of each node (default: 20 s of the offered rate, at least 48 MiB, so buffer-full can fill it)")
	dupWindow := fs.Duration("duplicate-window", 0, "queue.duplicate_window of each node (default: what RAW's share of max_bytes holds at the offered rate, less a fifth, at least 2s: the trimmer keeps younger records, so a longer window stalls a small buffer)")
	drain := fs.Duration("drain-timeout", 10*time.Minute, "how long to wait for the backlog after the last fault")
	logLevel := fs.String("log-level", "warn", "the nodes' log level (their logs go to the output directory)")
	netns := fs.Bool("netns", false, "run each node in its own network namespace (as root; the partition fault turns it on)")
	_ = fs.Parse(args)
	kinds, err := parseFaults(*faults)
	if err != nil {
		return err
	}
	if *nodes != 1 && *nodes != 3 {
		return fmt.Errorf("--nodes %d: want 1 or 3", *nodes)
	}
	o := chaosOpts{nodes: *nodes, duration: *duration, rate: *rate, seed: *seed, out: *out, maxBytes: *maxBytes, drain: *drain, logLevel: *logLevel}
	plan, err := planFaults(kinds, *nodes, *faults != "all" && *faults != "", netnsNeeds())
	if err != nil {
		return err
	}
	for _, note := range plan.notes {
		fmt.Println("chaos:", note)
	}
	o.faults, o.secondSource, o.netns = plan.faults, plan.secondSource, plan.netns || *netns
	if why := netnsNeeds(); o.netns && why != "" {
		return fmt.Errorf("--netns: %s", why)
	}
	if o.maxBytes == 0 {
		o.maxBytes = max(48<<20, int64(o.rate*1e6*20))
	}
	o.dupWindow = *dupWindow
	if o.dupWindow == 0 {
		inflow := o.rate * 1e6 // bytes a second into RAW
		if o.secondSource {
			inflow *= 2
		}
		o.dupWindow = max(2*time.Second, time.Duration(0.3*float64(o.maxBytes)/inflow*0.8*float64(time.Second)).Round(time.Second))
	}
	res, err := runChaos(o)
	if err != nil {
		return err
	}
	if res.missing > 0 || res.crashes > 0 || len(res.violations) > 0 {
		return fmt.Errorf("%d records missing, %d unplanned node exits, %d violations", res.missing, res.crashes, len(res.violations))
	}
	return nil
}

type chaosOpts struct {
	nodes    int
	duration time.Duration
	rate     float64 // MB/s
	seed     uint64
	faults   []string
	out      string
	maxBytes int64
	// dupWindow is queue.duplicate_window: the trimmer never removes a
	// record younger, so RAW must hold that much of the inflow.
	dupWindow time.Duration
	drain     time.Duration
	logLevel  string
	// secondSource adds a second source on the same logstore (its own
	// consumer group and fixed schema) whose records go to a second sink.
	secondSource bool
	// netns runs each node in its own network namespace (chaosNet).
	netns bool
}

// faultPlan is what a run injects, from --faults and --nodes.
type faultPlan struct {
	faults       []string // the windowed kinds to schedule
	secondSource bool
	netns        bool     // partition is in: the nodes run in namespaces
	notes        []string // kinds left out, and why
}

// planFaults picks the kinds a run injects. Quorum loss and partition
// need three nodes, and partition needs network namespaces (netnsWhy says
// why there are none, or is ""): left out of "all" with a note, an error
// when named.
func planFaults(kinds []string, nodes int, named bool, netnsWhy string) (faultPlan, error) {
	var p faultPlan
	for _, k := range kinds {
		switch {
		case k == "second-source":
			p.secondSource = true
		case (k == "quorum-loss" || k == "partition") && nodes < 3:
			// One node has no quorum to lose nor peers to lose; "kill" covers its death.
			p.notes = append(p.notes, k+" left out: it needs --nodes 3")
		case k == "partition" && netnsWhy != "" && named:
			return p, fmt.Errorf("--faults partition: %s", netnsWhy)
		case k == "partition" && netnsWhy != "":
			p.notes = append(p.notes, "partition left out: "+netnsWhy)
		case !slices.Contains(setupFaults, k):
			p.faults = append(p.faults, k)
			p.netns = p.netns || k == "partition"
		}
	}
	return p, nil
}

type chaosRun struct {
	opts      chaosOpts
	dir, bin  string
	policyDir string
	sls       *slstest.Server
	hec       *hectest.Server
	hec2      *hectest.Server // the second source's sink, when there is one
	ledger    *ledger
	splunk    *book // what the first sink owes
	// sinkName is the first sink's name in the nodes' configs now; the
	// sink-rename fault changes it (the sink reads out.<sinkName>).
	sinkName string
	renames  int
	writer   *writer
	nodes    []*chaosNode
	routes   []string // the nodes' route addresses, in a cluster
	env      []string
	net      *chaosNet // when the nodes run in network namespaces
	start    time.Time
	schedule []fault

	mu           sync.Mutex
	events       []chaosEvent
	faultResults []faultResult
	begun        int // faults of the schedule injected so far
	crashes      int
	violations   []string // what a fault found that must not happen
	stopped      bool     // the run is over: node exits are expected
	cleanOnce    sync.Once
	stopWatch    func() // stops watching for Ctrl-C
}

type chaosEvent struct {
	at   time.Duration
	what string
}

func (c *chaosRun) eventf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := chaosEvent{at: time.Since(c.start), what: fmt.Sprintf(format, args...)}
	c.events = append(c.events, e)
	fmt.Fprintf(os.Stderr, "chaos %s  %s\n", fmtOffset(e.at), e.what)
}

// violation notes something a fault found that must not happen; the run
// then fails.
func (c *chaosRun) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.violations = append(c.violations, msg)
	c.mu.Unlock()
	c.eventf("VIOLATION: %s", msg)
}

// cause is the index in the schedule of the fault a duplicate is blamed
// on, or -1 for none. Redeliveries come up to an ack wait after their
// fault, so it is any fault active in the last 60 s, the likeliest first:
// a kill (batches in flight are sent again), a slow Splunk (requests time
// out after it indexed), then the latest.
func (c *chaosRun) cause() int {
	c.mu.Lock()
	begun := slices.Clone(c.schedule[:c.begun]) // runFaults moves later faults when a heal overran
	c.mu.Unlock()
	now := time.Since(c.start)
	best := -1
	kind := func(i int) string {
		if i < 0 {
			return "none"
		}
		return begun[i].Kind
	}
	for i, f := range begun {
		if now > f.end()+time.Minute {
			continue
		}
		// A node's death (kill, quorum-loss) or cut-off explains copies best.
		death := func(k string) bool { return k == "kill" || k == "quorum-loss" || k == "partition" }
		switch b := kind(best); {
		case death(f.Kind), f.Kind == "hec-slow" && !death(b), !death(b) && b != "hec-slow":
			best = i
		}
	}
	return best
}

func runChaos(o chaosOpts) (*chaosResult, error) {
	c, err := newChaosRun(o)
	if c != nil {
		defer c.cleanup()
	}
	if err != nil {
		return nil, err
	}
	o = c.opts
	fill := time.Duration(0.9 * float64(o.maxBytes) / (o.rate * 1e6) * 1.3 * float64(time.Second))
	c.schedule = schedule(o.seed, o.faults, o.nodes, o.duration, fill)
	fmt.Printf("chaos: %d node(s), %s at %.1f MB/s, seed %d, queue.max_bytes %d MiB, duplicate_window %s, %d faults; output in %s\n",
		o.nodes, o.duration, o.rate, o.seed, o.maxBytes>>20, o.dupWindow, len(c.schedule), o.out)
	for _, f := range c.schedule {
		fmt.Printf("  %s  %s\n", fmtOffset(f.At), f)
	}

	c.start = time.Now()
	c.ledger.start = c.start
	sampler := newSampler(c)
	go sampler.run()
	w, err := startWriter(c)
	if err != nil {
		return nil, err
	}
	c.writer = w
	c.runFaults()
	c.eventf("writing stops; waiting for the backlog to drain")
	w.stop()
	drained := c.waitDrained()
	sampler.stop()
	c.scanSecrets()
	res := c.result(sampler, w, drained)
	if err := res.write(c, sampler); err != nil {
		return nil, err
	}
	return res, nil
}

// newChaosRun builds sluice and starts the stand-ins and the nodes. A
// run it returns, even with an error, is to be cleaned up; Ctrl-C cleans
// it up too.
func newChaosRun(o chaosOpts) (*chaosRun, error) {
	dir, bin, err := workspace("chaos")
	if err != nil {
		return nil, err
	}
	if o.out == "" {
		o.out = filepath.Join(dir, "out")
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	c := &chaosRun{opts: o, dir: dir, bin: bin}
	stop := onInterrupt(c.cleanup)
	c.stopWatch = stop
	return c, c.setup()
}

// setup starts the stand-ins and the nodes.
func (c *chaosRun) setup() error {
	var err error
	if c.opts.netns {
		if c.net, err = newChaosNet(c.opts.nodes); err != nil {
			return err
		}
	}
	c.sls, err = slstest.NewServer(slstest.Options{Project: "chaos", Logstore: "audit", Shards: chaosShards, Addr: c.standinAddr(),
		AccessKeyID: benchAKID, AccessKeySecret: benchAKKey, TrimConsumed: 10 * time.Second}) // a minute at 10 MB/s held 3 GB
	if err != nil {
		return err
	}
	c.ledger = newLedger(c.cause)
	c.sinkName = "splunk"
	c.splunk = c.ledger.book("splunk", queue.RawSubject("audit"), queue.OutSubject("splunk"))
	c.splunk.refuses = true
	// Indexer acknowledgement is on when the run turns it off on the token.
	c.hec, err = hectest.NewServer(hectest.Options{Token: benchToken, Out: c.splunk, Discard: true, Ack: c.acks(), Addr: c.standinAddr()})
	if err != nil {
		return err
	}
	// A copy of the shipped policies: the policy-break fault writes into it.
	c.policyDir = filepath.Join(c.dir, "policies")
	shipped, err := repoPath("testdata", "policies")
	if err != nil {
		return err
	}
	if err := os.CopyFS(c.policyDir, os.DirFS(shipped)); err != nil {
		return fmt.Errorf("copy %s: %w", shipped, err)
	}
	if c.opts.secondSource {
		if err := c.setupSecondSource(); err != nil {
			return err
		}
	}
	c.env = append(os.Environ(), "SLS_AK_KEY="+benchAKKey, "SPLUNK_HEC_TOKEN="+benchToken, "SLUICE_ADMIN_TOKEN="+benchAdminToken, "SLUICE_NATS_OPERATOR_PASSWORD="+benchNATSPassword)
	for i := range c.opts.nodes {
		c.routes = append(c.routes, c.nodeAddr(i, "route"))
	}
	for i := range c.opts.nodes {
		n := &chaosNode{name: fmt.Sprint("node-", i+1), admin: c.nodeAddr(i, "admin"), nats: c.nodeAddr(i, "nats")}
		n.config = filepath.Join(c.dir, n.name+".yaml")
		c.nodes = append(c.nodes, n)
		if err := c.writeConfig(i, c.opts.maxBytes); err != nil {
			return err
		}
	}
	for i := range c.nodes {
		if err := c.startNode(i); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		if err := n.waitReady(2 * time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// standinAddr is where the stand-ins listen: loopback, or this process's
// address on the nodes' service network.
func (c *chaosRun) standinAddr() string {
	if c.net == nil {
		return ""
	}
	return c.net.HostIP() + ":0"
}

// nodeAddr is node i's route, admin or NATS address: a free loopback
// port, or the node's own address in its namespace.
func (c *chaosRun) nodeAddr(i int, what string) string {
	if c.net == nil {
		return freeAddr()
	}
	switch what {
	case "route":
		return c.net.ClusterIP(i) + ":6222"
	case "admin":
		return c.net.ServiceIP(i) + ":8686"
	}
	return c.net.ServiceIP(i) + ":4222"
}

// writeConfig writes node i's config file with queue.max_bytes maxBytes.
func (c *chaosRun) writeConfig(i int, maxBytes int64) error {
	n := c.nodes[i]
	return os.WriteFile(n.config, []byte(c.nodeConfig(n, c.routes, i, maxBytes)), 0o600)
}

// firstSink is the first sink's name now.
func (c *chaosRun) firstSink() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sinkName
}

// acks says whether the sinks ask for indexer acknowledgement: only when
// the hec-ack-off fault is to turn it off under them.
func (c *chaosRun) acks() bool { return slices.Contains(c.opts.faults, "hec-ack-off") }

// setupSecondSource starts the second sink's stand-in and its book, and
// writes the policies: the shipped schema names its sink (two Splunk sinks
// are configured now), the second source's schema sends every audit
// record to the second sink.
func (c *chaosRun) setupSecondSource() error {
	var err error
	second := c.ledger.book("splunk2", queue.RawSubject("second"), queue.OutSubject("splunk2"))
	if c.hec2, err = hectest.NewServer(hectest.Options{Token: benchToken, Out: second, Discard: true, Addr: c.standinAddr()}); err != nil {
		return err
	}
	path := filepath.Join(c.policyDir, "schema", "sls_audit.rego")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	named := strings.Replace(string(b), `"sourcetype": "sls:audit",`, `"sourcetype": "sls:audit",
	"sink": "splunk",`, 1)
	if named == string(b) {
		return fmt.Errorf("%s: found no sourcetype to name the sink beside", path)
	}
	if err := os.WriteFile(path, []byte(named), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.policyDir, "schema", "chaos_second.rego"), []byte(`package schema.chaos_second

log contains {
	"timestamp": to_number(input.__time__),
	"data": object.remove(input, ["__time__"]),
	"sourcetype": "sls:audit",
	"sink": "splunk2",
} if {
	input.__topic__ == "audit_log"
}
`), 0o644)
}

func (c *chaosRun) nodeConfig(n *chaosNode, routes []string, i int, maxBytes int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, `node:
  name: %s
  data_dir: %s
  admin_listen: %s
  admin_token: ${SLUICE_ADMIN_TOKEN}
  nats_listen: %s
  nats_operator_password: ${SLUICE_NATS_OPERATOR_PASSWORD}
  shutdown_timeout: 5s
  log_level: %s
queue:
  max_bytes: %d
  duplicate_window: %s
policies:
  dir: %s
transform:
  ack_wait: 10s
sources:
  - name: audit
    type: sls
    endpoint: %s
    project: chaos
    logstore: audit
    consumer_group: sluice
    access_key_id: %s
    access_key_secret: ${SLS_AK_KEY}
    heartbeat_interval: 2s
    checkpoint_interval: 1s
sinks:
  - name: %s
    type: splunk_hec
    url: %s
    token: ${SPLUNK_HEC_TOKEN}
    index: security
    timeout: 10s
    ack_wait: 20s
    max_backoff: 2s
    ack: %t
`, n.name, filepath.Join(c.dir, n.name), n.admin, n.nats, c.opts.logLevel, maxBytes, c.opts.dupWindow, c.policyDir, c.sls.Endpoint, benchAKID, c.firstSink(), c.hec.URL, c.acks())
	if c.hec2 != nil {
		fmt.Fprintf(&b, `  - name: splunk2
    type: splunk_hec
    url: %s
    token: ${SPLUNK_HEC_TOKEN}
    index: second
    timeout: 10s
    ack_wait: 20s
    max_backoff: 2s
`, c.hec2.URL)
		// sources: is a list above sinks:, so the second source is put in it.
		s := b.String()
		second := fmt.Sprintf(`  - name: second
    type: sls
    endpoint: %s
    project: chaos
    logstore: audit
    consumer_group: sluice-second
    schema: chaos_second
    access_key_id: %s
    access_key_secret: ${SLS_AK_KEY}
    heartbeat_interval: 2s
    checkpoint_interval: 1s
`, c.sls.Endpoint, benchAKID)
		i := strings.Index(s, "sinks:\n")
		b.Reset()
		b.WriteString(s[:i] + second + s[i:])
	}
	if len(routes) > 1 {
		fmt.Fprintf(&b, "cluster:\n  name: chaos\n  listen: %s\n  peers: [%s]\n  replicas: 3\n", routes[i], strings.Join(routes, ", "))
	}
	return c.onBridges(b.String())
}

// onBridges lets a config serve cleartext admin, NATS and routes on the
// namespaces' private bridges (the harness reads them without the
// cluster's certificates); on loopback it is unchanged.
func (c *chaosRun) onBridges(cfg string) string {
	if c.net == nil {
		return cfg
	}
	cfg = strings.Replace(cfg, "  log_level:", "  insecure: true\n  log_level:", 1)
	if strings.Contains(cfg, "\ncluster:\n") {
		cfg += "  insecure: true\n"
	}
	return cfg
}

// chaosNode is one sluice process.
type chaosNode struct {
	name, config, admin, nats string

	mu      sync.Mutex
	proc    *nodeProc // nil while down
	peakRSS int64
	starts  int
}

// nodeProc is one life of a node's process.
type nodeProc struct {
	cmd      *exec.Cmd
	expected atomic.Bool // its exit was asked for
}

func (c *chaosRun) startNode(i int) error {
	n := c.nodes[i]
	logf, err := os.OpenFile(filepath.Join(c.opts.out, n.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := c.nodeCommand(i, "run", "-c", n.config)
	cmd.Env, cmd.Stdout, cmd.Stderr = c.env, logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	p := &nodeProc{cmd: cmd}
	n.mu.Lock()
	n.proc = p
	n.starts++
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		if n.proc == p {
			n.proc = nil
		}
		n.mu.Unlock()
		c.mu.Lock()
		over := c.stopped
		c.mu.Unlock()
		if !p.expected.Load() && !over {
			c.mu.Lock()
			c.crashes++
			c.mu.Unlock()
			c.eventf("%s exited on its own (%v): restarting it; see %s.log", n.name, err, n.name)
			time.Sleep(time.Second)
			c.startNodeLogged(i)
		}
	}()
	return nil
}

// nodeCommand is sluice with args, in node i's namespace when there are.
func (c *chaosRun) nodeCommand(i int, args ...string) *exec.Cmd {
	argv := append([]string{c.bin}, args...)
	if c.net != nil {
		argv = c.net.wrap(i, argv)
	}
	return exec.Command(argv[0], argv[1:]...)
}

func (c *chaosRun) startNodeLogged(i int) {
	if err := c.startNode(i); err != nil {
		c.eventf("%v", err)
		return
	}
	c.eventf("%s started", c.nodes[i].name)
}

// stopNode sends SIGTERM and waits for the process to exit, as an
// operator restarting a node does.
func (c *chaosRun) stopNode(i int) {
	n := c.nodes[i]
	p := n.current()
	if p == nil {
		return
	}
	p.expected.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(time.Minute); n.current() == p && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if n.current() == p {
		c.eventf("%s did not stop within a minute of SIGTERM: killed", n.name)
		_ = p.cmd.Process.Kill()
	}
}

// killNode sends SIGKILL: no drain, no goodbye to SLS or the peers.
func (c *chaosRun) killNode(i int) {
	if p := c.nodes[i].current(); p != nil {
		p.expected.Store(true)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
}

func (n *chaosNode) current() *nodeProc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

func (n *chaosNode) pid() int {
	if p := n.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

func (n *chaosNode) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + n.admin + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s", n.name, within)
}

// runFaults injects the schedule in order, each healed when its window ends.
func (c *chaosRun) runFaults() {
	// slip is how far heals that overran (a restart of every node, a
	// backlog moved) pushed the rest of the schedule back: each later
	// fault keeps its whole window, and the run lasts that much longer.
	var slip time.Duration
	for i := range c.schedule {
		c.mu.Lock()
		c.schedule[i].At += slip
		f := c.schedule[i]
		c.mu.Unlock()
		time.Sleep(time.Until(c.start.Add(f.At)))
		c.mu.Lock()
		c.begun = i + 1
		c.mu.Unlock()
		c.eventf("fault: %s", f)
		requests, accepted := c.hec.Requests(), c.splunk.accepts()
		heal := c.inject(f)
		time.Sleep(time.Until(c.start.Add(f.end())))
		heal()
		if late := time.Since(c.start) - f.end(); late > time.Second {
			slip += late
			c.eventf("the heal of %s took %s past its window: later faults move back by as much", f.Kind, late.Round(time.Second))
		}
		// Read before taking c.mu: the ledger's lock is taken before c.mu
		// elsewhere (a duplicate asks cause()).
		fr := faultResult{f: f, index: i, requests: c.hec.Requests() - requests, accepted: c.splunk.accepts() - accepted}
		c.mu.Lock()
		c.faultResults = append(c.faultResults, fr)
		c.mu.Unlock()
		c.eventf("healed: %s", f.Kind)
	}
	time.Sleep(time.Until(c.start.Add(c.opts.duration + slip)))
}

// waitDrained waits until every produced record reached Splunk, was
// refused by it (and so is owed to the DLQ), or is in the DLQ: records a
// fault sent there on purpose (an oversized record, a policy timeout)
// never reach Splunk, so once few are left it reads the DLQ now and then.
func (c *chaosRun) waitDrained() bool {
	deadline := time.Now().Add(c.opts.drain)
	var dead map[string]map[int]bool
	var lastRead time.Time
	for {
		left := c.ledger.outstanding(dead)
		if left == 0 {
			c.eventf("drained: every produced record reached Splunk, was refused by it, or is in the DLQ")
			return true
		}
		if time.Now().After(deadline) {
			c.eventf("drain timeout: %d records still not at Splunk nor in the DLQ", left)
			return false
		}
		if left < 5000 && time.Since(lastRead) > 10*time.Second {
			if d, _, err := c.readDLQ(); err == nil {
				dead = d
			}
			lastRead = time.Now()
		}
		time.Sleep(2 * time.Second)
	}
}

// cleanup stops the nodes and the stand-ins and removes what the run
// made; once, whether the run ended, failed or was interrupted.
func (c *chaosRun) cleanup() { c.cleanOnce.Do(c.cleanupOnce) }

func (c *chaosRun) cleanupOnce() {
	if c.stopWatch != nil {
		defer c.stopWatch()
	}
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	for _, n := range c.nodes {
		if p := n.current(); p != nil {
			p.expected.Store(true)
			_ = p.cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() {
				for n.pid() != 0 {
					time.Sleep(50 * time.Millisecond)
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
			}
		}
	}
	if c.net != nil {
		c.net.teardown()
	}
	if c.hec != nil {
		c.hec.Close()
	}
	if c.hec2 != nil {
		c.hec2.Close()
	}
	if c.sls != nil {
		c.sls.Close()
	}
	_ = os.RemoveAll(filepath.Join(c.dir, "policies"))
	for _, n := range c.nodes {
		_ = os.RemoveAll(filepath.Join(c.dir, n.name))
	}
	_ = os.Remove(c.bin)
}

func fmtOffset(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("+%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// machine describes this box for the report.
func machine() string {
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%d cores, %s, %s %s/%s", runtime.NumCPU(), mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
