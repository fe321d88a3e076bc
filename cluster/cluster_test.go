package cluster_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/node/ops"
)

// clusterChildEnv names the config a child process runs a node from.
const clusterChildEnv = "SLUICE_CLUSTER_CHILD_CONFIG"

// runClusterChild is the child's side: a node from the config until killed.
func runClusterChild(t *testing.T) bool {
	path := os.Getenv(clusterChildEnv)
	if path == "" {
		return false
	}
	cfg, err := node.Load(path, builtin.Registry())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, err := node.New(cfg, node.Options{Logger: childLogger(cfg.Node.LogLevel)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := n.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return true
}

// sampleEpoch is when the sample logs start.
var sampleEpoch = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

// routedSeqs is what the default policies send to Splunk out of the sample.
func routedSeqs(records int) map[string]bool {
	return slstest.AuditSeqs(slstest.AuditLogGroups(1, records, sampleEpoch))
}

// childLogger logs a child node's text to stderr, which the test keeps.
func childLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// testCluster is three sluice nodes as child processes, with the SLS and
// HEC stand-ins in the test process.
type testCluster struct {
	t       *testing.T
	sls     *slstest.Server
	hec     *hectest.Server
	configs []string
	admins  []string
	cmds    []*exec.Cmd
	test    string
	groups  []*sls.LogGroup // what the SLS writer puts, in order
	env     []string        // the secrets and endpoints the example configs read
	net     clusterNet
	certs   string        // the cluster CA and the nodes' route certificates
	https   *http.Client  // to the admin APIs: trusts the CA of the nodes' node.tls certificates
	ops     []*ops.Client // one per node
}

// put writes log groups [from, to) of the sample to the SLS stand-in, as
// Preload would have.
func (c *testCluster) put(from, to int) {
	for i := from; i < to; i++ {
		lg := c.groups[i]
		c.sls.PutAt(i%4, lg, time.Unix(int64(lg.Logs[0].GetTime()), 0))
	}
}

// putRest writes every group not yet written.
func (c *testCluster) putRest() { c.put(len(c.groups)*2/5, len(c.groups)) }

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// clusterNet places the nodes: their route and admin addresses, where the
// stand-ins listen, and how a node's process is started (in a netns).
type clusterNet struct {
	routes, admins []string
	standins       string // host:port for the stand-ins; default 127.0.0.1:0
	slsHeartbeat   string // the sources' heartbeat_interval; default 1s
	adminToken     string // required when the admin address is not loopback
	wrap           func(i int, argv []string) []string
}

func loopbackNet(t *testing.T) clusterNet {
	return clusterNet{
		routes: []string{freeTCPAddr(t), freeTCPAddr(t), freeTCPAddr(t)},
		admins: []string{freeTCPAddr(t), freeTCPAddr(t), freeTCPAddr(t)},
	}
}

func startTestCluster(t *testing.T, test string, records int) *testCluster {
	t.Helper()
	return startTestClusterOn(t, test, records, loopbackNet(t))
}

func startTestClusterOn(t *testing.T, test string, records int, net clusterNet) *testCluster {
	t.Helper()
	s, err := slstest.NewServer(slstest.Options{Project: "proj", Logstore: "audit", Shards: 4, AccessKeyID: "ak", AccessKeySecret: "sk", Addr: net.standins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := &testCluster{t: t, sls: s, test: test, groups: slstest.AuditLogGroups(1, records, sampleEpoch), net: net, admins: net.admins}
	c.put(0, len(c.groups)*2/5) // the rest comes while a node is down
	// Slow pulls keep the stream going for seconds.
	s.SlowPulls(100 * time.Millisecond)
	hec, err := hectest.NewServer(hectest.Options{Token: "hec-token", Addr: net.standins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hec.Close)
	policies, err := filepath.Abs("../testdata/policies")
	if err != nil {
		t.Fatal(err)
	}
	c.hec = hec
	routes := net.routes
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	c.certs = certs
	var hosts []string
	for _, r := range routes {
		h, _, _ := strings.Cut(r, ":")
		hosts = append(hosts, h)
	}
	// Each node's certificate also holds its admin address (node.tls).
	var nodes []string
	for i, a := range net.admins {
		h, _, _ := strings.Cut(a, ":")
		nodes = append(nodes, fmt.Sprintf("node-%d=%s", i+1, h))
	}
	if err := cluster.GenerateCerts(cluster.CertOptions{Dir: certs, Nodes: nodes, Hosts: hosts}); err != nil {
		t.Fatal(err)
	}
	ca, err := ops.ClientTLS(filepath.Join(certs, "ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	c.https = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ca}}
	for _, a := range net.admins {
		c.ops = append(c.ops, ops.NewTLSClient(a, net.adminToken, ca))
	}
	c.env = []string{"SLS_ENDPOINT=" + s.Endpoint, "SLS_PROJECT=proj", "SLS_LOGSTORE=audit", "SLS_AK_ID=ak", "SLS_AK_KEY=sk",
		"SPLUNK_HEC_URL=" + hec.URL, "SPLUNK_HEC_TOKEN=hec-token"}
	for i := range routes {
		admin := net.admins[i]
		if net.adminToken != "" {
			admin += "\n  admin_token: " + net.adminToken
		}
		// The shipped example, with only addresses, paths and test tunings replaced.
		example := fmt.Sprintf("../deploy/cluster/node-%d.yaml", i+1)
		b, err := os.ReadFile(example)
		if err != nil {
			t.Fatal(err)
		}
		cfg := string(b)
		for _, r := range [][2]string{
			{"10.0.0.11:6222", routes[0]}, {"10.0.0.12:6222", routes[1]}, {"10.0.0.13:6222", routes[2]},
			{"127.0.0.1:8686", admin},
			{"/var/lib/sluice", filepath.Join(dir, fmt.Sprint("node-", i+1))},
			{"/etc/sluice/policies", policies},
			{"/etc/sluice/certs", certs},
			{"max_bytes: 100GiB", "max_bytes: 512MiB"},
			{"shutdown_timeout: 30s", "shutdown_timeout: 5s\n  log_level: warn"},
			{"consumer_group: sluice", "consumer_group: sluice\n    heartbeat_interval: " + cmp.Or(net.slsHeartbeat, "1s") + "\n    fetch_interval: 20ms\n    max_fetch_log_groups: 4\n    checkpoint_interval: 500ms"},
			{"index: security", "index: security\n    timeout: 2s\n    ack_wait: 5s\n    max_backoff: 500ms"},
		} {
			if !strings.Contains(cfg, r[0]) {
				t.Fatalf("%s no longer has %q: update the test with the example", example, r[0])
			}
			cfg = strings.ReplaceAll(cfg, r[0], r[1])
		}
		cfg += "transform: {ack_wait: 5s}\n"
		path := filepath.Join(dir, fmt.Sprintf("node-%d.yaml", i+1))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		c.configs = append(c.configs, path)
	}
	c.cmds = make([]*exec.Cmd, len(c.configs))
	for i := range c.configs {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.cmds {
			c.kill(i)
		}
	})
	for i := range c.configs {
		c.waitReady(i, 90*time.Second)
	}
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	argv := []string{os.Args[0], "-test.run=^" + c.test + "$"}
	if c.net.wrap != nil {
		argv = c.net.wrap(i, argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), c.env...), clusterChildEnv+"="+c.configs[i])
	cmd.Stderr = testLogWriter{c.t, fmt.Sprintf("node-%d: ", i+1)}
	if dir := os.Getenv("SLUICE_CLUSTER_TEST_LOGS"); dir != "" { // keep each node's whole stderr, a folder a test
		dir = filepath.Join(dir, c.test)
		_ = os.MkdirAll(dir, 0o755)
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("node-%d.log", i+1)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			cmd.Stderr = io.MultiWriter(cmd.Stderr, f)
		}
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.cmds[i] = cmd
}

// kill sends SIGKILL: no drain, no goodbye to SLS or the peers.
func (c *testCluster) kill(i int) {
	if cmd := c.cmds[i]; cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		c.cmds[i] = nil
	}
}

func (c *testCluster) waitReady(i int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := c.https.Get("https://" + c.admins[i] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node-%d not ready within %s", i+1, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// delivered counts each seq the HEC stand-in accepted.
func (c *testCluster) delivered() map[string]int {
	got := map[string]int{}
	for _, e := range c.hec.Accepted() {
		var ev struct {
			Event map[string]any `json:"event"`
		}
		if json.Unmarshal(e.Raw, &ev) == nil {
			if seq, ok := ev.Event["seq"].(string); ok {
				got[seq]++
			}
		}
	}
	return got
}

func (c *testCluster) status(i int) *ops.Status {
	c.t.Helper()
	st, err := c.ops[i].Status(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	return st
}

func (c *testCluster) metrics(i int) string {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+c.admins[i]+"/metrics", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.net.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.net.adminToken)
	}
	resp, err := c.https.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b)
}

// peerUp says "up", "down" or "unknown" for a peer in a cluster status.
func peerUp(c *ops.ClusterStatus, name string) string {
	for _, p := range c.Peers {
		if p.Name == name {
			if p.RouteUp {
				return "up"
			}
			return "down"
		}
	}
	return "unknown"
}

// waitDelivered waits until at least n distinct routed records arrived.
func (c *testCluster) waitDelivered(n int, within time.Duration, what string) {
	c.t.Helper()
	for deadline := time.Now().Add(within); len(c.delivered()) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not arrive within %s (%d of %d)", what, within, len(c.delivered()), n)
		}
	}
}

// waitAll waits up to within for every seq of want, then returns what
// arrived, how many never did and how many arrived more than once.
func (c *testCluster) waitAll(want map[string]bool, within time.Duration) (got map[string]int, missing, dups int) {
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if got = c.delivered(); len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	var lost []int
	for seq := range want {
		if got[seq] == 0 {
			missing++
			n, _ := strconv.Atoi(seq)
			lost = append(lost, n)
		}
		dups += max(0, got[seq]-1)
	}
	if missing > 0 {
		// Say which records, and whether they are late or gone: a stalled
		// shard shows up later, a lost record never does.
		slices.Sort(lost)
		c.t.Logf("missing seqs %s", seqRanges(lost))
		late := time.Now()
		for deadline := late.Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			if n := len(c.delivered()); n >= len(want) {
				c.t.Logf("the missing records arrived %s after the wait ended", time.Since(late).Round(time.Second))
				break
			}
		}
	}
	return got, missing, dups
}

// seqRanges writes sorted numbers as "a-b, c, d-e".
func seqRanges(ns []int) string {
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if i == j {
			fmt.Fprint(&b, ns[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", ns[i], ns[j])
		}
		i = j + 1
	}
	return b.String()
}

type testLogWriter struct {
	t      *testing.T
	prefix string
}

func (w testLogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, `msg="cluster: `) {
			w.t.Log(w.prefix + line)
		}
	}
	return len(p), nil
}

// TestClusterSurvivesSIGKILLOfANode: three nodes with R3 streams read four
// SLS shards; one node is SIGKILLed mid-stream and restarted a little later.
// Every routed record reaches Splunk (at least once), the survivors take
// the dead node's shards, and the restarted node catches up.
func TestClusterSurvivesSIGKILLOfANode(t *testing.T) {
	if runClusterChild(t) {
		return
	}
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	const records = 12000
	want := routedSeqs(records)
	c := startTestCluster(t, "TestClusterSurvivesSIGKILLOfANode", records)

	c.waitDelivered(len(want)/4, 90*time.Second, "a quarter of the records")
	wasMetaLeader := c.status(0).Cluster.MetaLeader == "node-2"
	c.kill(1)
	killedAt := len(c.delivered())
	c.putRest()
	// The survivors hold every shard once node-2's heartbeat times out.
	tookOver := false
	// How long the survivors go without contact with a quorum (an election
	// when node-2 led the meta group): cluster.pause_after must exceed it.
	var survivorAge float64
	for deadline := time.Now().Add(30 * time.Second); !tookOver && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, i := range []int{0, 2} {
			survivorAge = max(survivorAge, c.metricValue(i, "sluice_cluster_quorum_contact_age_seconds"))
		}
		owners := c.sls.Owners("sluice")
		tookOver = len(owners) == 4
		for _, o := range owners {
			if strings.HasPrefix(o, "node-2") {
				tookOver = false
			}
		}
	}
	if !tookOver {
		t.Errorf("the survivors did not take node-2's shards: owners %v", c.sls.Owners("sluice"))
	}
	// ...and deliver without it: the durable consumers moved to them.
	for deadline := time.Now().Add(30 * time.Second); len(c.delivered()) <= killedAt; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the survivors delivered nothing in 30s without node-2 (%d of %d)", killedAt, len(want))
		}
	}
	time.Sleep(2 * time.Second)
	duringOutage := len(c.delivered())
	// What the operator sees on a survivor: node-2 down, a meta leader still.
	st := c.status(0)
	if st.Cluster == nil || st.Cluster.MetaLeader == "" || peerUp(st.Cluster, "node-2") != "down" || peerUp(st.Cluster, "node-3") != "up" {
		t.Errorf("node-1's status while node-2 is down: %+v", st.Cluster)
	}
	if m := c.metrics(0); !strings.Contains(m, `sluice_cluster_peer_up{peer="node-2"} 0`) || !strings.Contains(m, "sluice_cluster_has_meta_leader 1") {
		t.Errorf("node-1's metrics do not show node-2 down under a meta leader")
	}
	// The example's routes use mutual TLS: nothing insecure to show.
	if m := c.metrics(0); !strings.Contains(m, `sluice_insecure{setting="cluster.insecure",what="cluster_routes"} 0`) || len(st.Insecure) != 0 {
		t.Errorf("node-1 shows insecure settings %v, or its metrics lack sluice_insecure 0 for cluster routes", st.Insecure)
	}
	c.start(1)

	got, missing, dups := c.waitAll(want, 120*time.Second)
	if missing > 0 {
		t.Fatalf("%d of %d routed records never reached Splunk (killed node-2 after %d)", missing, len(want), killedAt)
	}
	if extra := len(got) - len(want); extra != 0 {
		t.Errorf("%d records reached Splunk that the policy does not route", extra)
	}
	c.waitReady(1, 60*time.Second) // the restarted node rejoined and its streams have leaders
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st := c.status(0)
		caughtUp := st.Cluster != nil && peerUp(st.Cluster, "node-2") == "up"
		for _, s := range st.Streams {
			for _, r := range s.Replicas {
				caughtUp = caughtUp && r.Current
			}
		}
		if caughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-2 did not catch up within 30s of delivery ending: %+v %+v", st.Cluster, st.Streams)
		}
	}
	for _, i := range []int{0, 2} {
		if n := c.metricValue(i, "sluice_cluster_pauses_total"); n != 0 {
			t.Errorf("node-%d, a survivor, paused %v times", i+1, n)
		}
	}
	t.Logf("killed node-2 after %d of %d routed records; %d delivered while it was down; all arrived; %d duplicates (at-least-once); the survivors went at most %.2fs without quorum contact (node-2 was meta leader: %v)",
		killedAt, len(want), duringOutage-killedAt, dups, survivorAge, wasMetaLeader)
}

// TestClusterWithoutQuorumHoldsThenDelivers: two of three nodes die. The
// last one cannot replicate, so it must neither checkpoint SLS nor ack
// anything; when the two return, everything is delivered.
func TestClusterWithoutQuorumHoldsThenDelivers(t *testing.T) {
	if runClusterChild(t) {
		return
	}
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	const records = 12000
	want := routedSeqs(records)
	c := startTestCluster(t, "TestClusterWithoutQuorumHoldsThenDelivers", records)
	c.waitDelivered(len(want)/5, 90*time.Second, "a fifth of the records")
	c.kill(1)
	c.kill(2)
	c.putRest()
	checkpoints := func() [4]int64 {
		var cp [4]int64
		for i := range cp {
			cp[i] = c.sls.CheckpointPosition("sluice", i)
		}
		return cp
	}
	// What RAW stored before the kill may still be checkpointed: by the
	// library's periodic commit, and by node-1's pause, which flushes the
	// checkpoints of what RAW stored (cluster.pause_after, 10 s, after its
	// last quorum contact). So the checkpoints must hold from the pause on.
	for deadline := time.Now().Add(60 * time.Second); c.metricValue(0, "sluice_cluster_paused") != 1; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node-1 did not pause within 60 s of losing its quorum")
		}
	}
	time.Sleep(3 * time.Second) // the pause's checkpoint flush
	before, deliveredBefore := checkpoints(), len(c.delivered())
	time.Sleep(8 * time.Second) // node-1 alone: the shards' heartbeats move to it
	if after := checkpoints(); after != before {
		t.Errorf("checkpoints moved without a quorum: %v → %v", before, after)
	}
	if n := len(c.delivered()); n != deliveredBefore {
		t.Logf("node-1 delivered %d records it had read before the quorum went", n-deliveredBefore)
	}
	// A Raft leader that lost its quorum steps down only after NATS's
	// lost-quorum interval (10 s), checked every 10 s: readiness may lag the
	// kill by up to 20 s, longer on a loaded machine.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		resp, err := c.https.Get("https://" + c.admins[0] + "/readyz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("node-1 still says ready 30 s after it lost its quorum")
			break
		}
	}
	c.start(1)
	c.start(2)
	_, missing, dups := c.waitAll(want, 120*time.Second)
	if missing > 0 {
		t.Fatalf("%d of %d routed records never reached Splunk after the quorum returned", missing, len(want))
	}
	t.Logf("quorum lost after %d of %d records; checkpoints held; all arrived after it returned, %d duplicates", deliveredBefore, len(want), dups)
}
