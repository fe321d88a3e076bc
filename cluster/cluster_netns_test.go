package cluster_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netLab is three network namespaces, one per node, each on two bridges:
// a cluster network for the routes and a service network on which the
// test process (the root namespace) runs the SLS and HEC stand-ins. Cutting
// a node's cluster link partitions it from its peers while it still
// reaches SLS and Splunk, as a switch failure between racks would.
type netLab struct {
	t      *testing.T
	prefix string
}

func (l *netLab) ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (l *netLab) must(args ...string) {
	l.t.Helper()
	if err := l.ip(args...); err != nil {
		l.t.Fatal(err)
	}
}

func (l *netLab) ns(i int) string { return fmt.Sprintf("%sn%d", l.prefix, i+1) }

// clusterLink is the root side of node i's cluster veth.
func (l *netLab) clusterLink(i int) string { return fmt.Sprintf("%sc%d", l.prefix, i+1) }

// newNetLab builds the namespaces, or skips the test where it cannot.
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the partition test needs root to create network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the partition test needs the ip command (iproute2)")
	}
	l := &netLab{t: t, prefix: fmt.Sprintf("sl%d", os.Getpid()%10000)}
	if err := l.ip("netns", "add", l.ns(0)); err != nil {
		t.Skipf("cannot create network namespaces here: %v", err)
	}
	t.Cleanup(l.teardown)
	for _, br := range []string{l.prefix + "bc", l.prefix + "bs"} {
		l.must("link", "add", br, "type", "bridge")
		l.must("link", "set", br, "up")
	}
	l.must("addr", "add", "10.202.0.1/24", "dev", l.prefix+"bs")
	for i := 0; i < 3; i++ {
		if i > 0 {
			l.must("netns", "add", l.ns(i))
		}
		l.must("-n", l.ns(i), "link", "set", "lo", "up")
		for _, n := range []struct{ kind, bridge, subnet string }{{"c", "bc", "10.201.0"}, {"s", "bs", "10.202.0"}} {
			root, inner := fmt.Sprintf("%s%s%d", l.prefix, n.kind, i+1), fmt.Sprintf("%s%s%di", l.prefix, n.kind, i+1)
			l.must("link", "add", root, "type", "veth", "peer", "name", inner)
			l.must("link", "set", inner, "netns", l.ns(i))
			l.must("link", "set", root, "master", l.prefix+n.bridge)
			l.must("link", "set", root, "up")
			l.must("-n", l.ns(i), "addr", "add", fmt.Sprintf("%s.%d/24", n.subnet, 11+i), "dev", inner)
			l.must("-n", l.ns(i), "link", "set", inner, "up")
		}
	}
	return l
}

func (l *netLab) teardown() {
	for i := 0; i < 3; i++ {
		_ = l.ip("netns", "del", l.ns(i)) // takes its veth ends, and so the pairs
	}
	for _, br := range []string{l.prefix + "bc", l.prefix + "bs"} {
		_ = l.ip("link", "del", br)
	}
}

// TestClusterPartitionedNodeHandsItsWorkOver cuts one node's cluster link
// mid-stream. The cut-off node still reaches SLS but can store nothing: it
// must checkpoint nothing, pause within cluster.pause_after, stop
// heart-beating so SLS gives its shards to the majority, and the majority
// must deliver every record while the partition lasts (before the pause,
// those shards stalled until the link healed). After healing, node-3
// resumes. The timings are logged: they are how the defaults were chosen.
func TestClusterPartitionedNodeHandsItsWorkOver(t *testing.T) {
	if runClusterChild(t) {
		return
	}
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	lab := newNetLab(t)
	const records = 12000
	want := routedSeqs(records)
	net := clusterNet{
		routes:       []string{"10.201.0.11:6222", "10.201.0.12:6222", "10.201.0.13:6222"},
		admins:       []string{"10.202.0.11:8686", "10.202.0.12:8686", "10.202.0.13:8686"},
		standins:     "10.202.0.1:0",
		adminToken:   "partition-test-admin-token",
		slsHeartbeat: "5s", // the default: the handover time measured is the one operators get
		wrap: func(i int, argv []string) []string {
			return append([]string{"ip", "netns", "exec", lab.ns(i)}, argv...)
		},
	}
	c := startTestClusterOn(t, "TestClusterPartitionedNodeHandsItsWorkOver", records, net)
	// An intruder on the cluster network (the test process, given an
	// address there) reaches node-1's route port, but without a
	// certificate from the cluster CA, or without TLS, it gets no route.
	lab.must("addr", "add", "10.201.0.1/24", "dev", lab.prefix+"bc")
	for what, cfg := range map[string]*tls.Config{"no certificate": c.routeTLS(), "no TLS": nil} {
		if line, err := routeHello(net.routes[0], cfg); err == nil || strings.Contains(line, "INFO") {
			t.Errorf("%s: node-1's route port answered %q (%v)", what, line, err)
		} else {
			t.Logf("%s: refused: %v", what, err)
		}
	}
	c.waitDelivered(len(want)/4, 90*time.Second, "a quarter of the records")
	owned := func() map[int]int64 {
		cp := map[int]int64{}
		for shard, owner := range c.sls.Owners("sluice") {
			if strings.HasPrefix(owner, "node-3") {
				cp[shard] = c.sls.CheckpointPosition("sluice", shard)
			}
		}
		return cp
	}
	// Cut node-3 off while it holds shards (the group spreads them over a
	// few heartbeats).
	held := owned()
	for deadline := time.Now().Add(60 * time.Second); len(held) == 0; held = owned() {
		if time.Now().After(deadline) {
			t.Fatalf("node-3 held no shard 60s into the run: owners %v", c.sls.Owners("sluice"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	metaLeader := c.status(0).Cluster.MetaLeader // node-3: the majority goes through an election
	for i := range 3 {
		if n := c.metricValue(i, "sluice_cluster_pauses_total"); n != 0 {
			t.Errorf("node-%d paused %v times before the cut, with every link up", i+1, n)
		}
	}
	lab.must("link", "set", lab.clusterLink(2), "down")
	cut := time.Now()
	cutAt := len(c.delivered())
	c.putRest()
	ho := c.watchHandover(cut, held, want, 3*time.Minute)
	// What node-3 replicated before the cut may still be checkpointed in
	// the first seconds; after that, while it holds a shard, nothing.
	for shard, pos := range ho.checkpointAtPause {
		if settled, ok := ho.checkpointSettled[shard]; ok && settled != pos {
			t.Errorf("node-3, cut off from its peers, moved the checkpoint of shard %d: %d → %d", shard, settled, pos)
		}
	}
	if ho.paused.IsZero() {
		t.Errorf("node-3 did not pause within %s of the cut", ho.waited)
	}
	for _, shard := range keys(held) {
		if ho.moved[shard].IsZero() {
			t.Errorf("node-3's shard %d was not handed to another node during the partition", shard)
		}
	}
	_, missing, dups := c.waitAll(want, time.Second)
	if missing > 0 {
		c.dumpOnMissing(missing, len(want), "while the partition lasted")
	}
	t.Logf("HANDOVER cut node-3 off after %d of %d records; node-3 held shards %v; paused %s after the cut; shards pulled elsewhere after %s; each shard's records all delivered after %s; all %d delivered %s after the cut, during the partition; %d duplicates so far",
		cutAt, len(want), keys(held), since(cut, ho.paused), sinceAll(cut, ho.moved), sinceAll(cut, ho.shardDone), len(want), since(cut, ho.allDone), dups)
	lab.must("link", "set", lab.clusterLink(2), "up")
	healed := time.Now()
	for deadline := healed.Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if c.metricsOK(2, "sluice_cluster_paused 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-3 still paused 90s after the link healed")
		}
	}
	resumed := time.Since(healed)
	time.Sleep(5 * time.Second) // what node-3 held at the cut may arrive again
	_, missing, dups = c.waitAll(want, 30*time.Second)
	if missing > 0 {
		c.dumpOnMissing(missing, len(want), "after the partition healed")
	}
	// What node-3 sent after the cut is sent again by the majority: at
	// most what its sink had in flight (in_flight requests × batch_events,
	// 4 × 2000 by default) and what it sent before it paused.
	const dupBound = 4 * 2000
	if dups > dupBound {
		t.Errorf("%d duplicates, more than the %d node-3's sink can have in flight", dups, dupBound)
	}
	for i := 0; i < 2; i++ {
		if n := c.metricValue(i, "sluice_cluster_pauses_total"); n != 0 {
			t.Errorf("node-%d, on the majority side, paused %v times", i+1, n)
		}
	}
	t.Logf("MAJORITY the longest node-1 or node-2 went without contact with a quorum: %.2fs (meta leader at the cut: %s)", ho.majorityContactAge, metaLeader)
	t.Logf("HEALED node-3 resumed %s after the link came back; %d duplicates in all (bound %d)", resumed.Round(100*time.Millisecond), dups, dupBound)
}

// handover is what watchHandover saw after a node was cut off.
type handover struct {
	paused            time.Time
	moved             map[int]time.Time // a held shard got an owner on the majority
	shardDone         map[int]time.Time // every routed record of a held shard delivered
	allDone           time.Time
	checkpointSettled map[int]int64 // node-3's checkpoints a few seconds after the cut
	checkpointAtPause map[int]int64 // and when it paused, for the shards it still held
	waited            time.Duration
	// majorityContactAge is the longest node-1 or node-2 went without
	// hearing from a quorum (what cluster.pause_after must exceed).
	majorityContactAge float64
}

// watchHandover polls, until every routed record arrived or within ends,
// node-3's pause (its metric), the owners of the shards it held and the
// records delivered by shard (group i is in shard i%4).
func (c *testCluster) watchHandover(cut time.Time, held map[int]int64, want map[string]bool, within time.Duration) handover {
	shardOf := map[string]int{}
	for i, lg := range c.groups {
		for _, l := range lg.Logs {
			for _, kv := range l.Contents {
				if kv.GetKey() == "seq" && want[kv.GetValue()] {
					shardOf[kv.GetValue()] = i % 4
				}
			}
		}
	}
	h := handover{moved: map[int]time.Time{}, shardDone: map[int]time.Time{}, checkpointSettled: map[int]int64{}, checkpointAtPause: map[int]int64{}}
	for deadline := cut.Add(within); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		now := time.Now()
		owners := c.sls.Owners("sluice")
		if now.Sub(cut) > 4*time.Second && len(h.checkpointSettled) == 0 {
			for shard := range held {
				h.checkpointSettled[shard] = c.sls.CheckpointPosition("sluice", shard)
			}
		}
		for i := 0; i < 2; i++ {
			h.majorityContactAge = max(h.majorityContactAge, c.metricValue(i, "sluice_cluster_quorum_contact_age_seconds"))
		}
		// node-3's /metrics is slow without quorum (stream gauges wait on
		// JetStream): the pause is dated when its answer came, an upper bound.
		if h.paused.IsZero() && c.metricsOK(2, "sluice_cluster_paused 1") {
			h.paused = time.Now()
			for shard := range held {
				if strings.HasPrefix(owners[shard], "node-3") {
					h.checkpointAtPause[shard] = c.sls.CheckpointPosition("sluice", shard)
				}
			}
		}
		for shard := range held {
			if o := owners[shard]; h.moved[shard].IsZero() && o != "" && !strings.HasPrefix(o, "node-3") && !strings.HasPrefix(o, "-released-by-node-3") {
				h.moved[shard] = now
			}
		}
		got := c.delivered()
		left := map[int]int{}
		for seq, shard := range shardOf {
			if got[seq] == 0 {
				left[shard]++
			}
		}
		for shard := range held {
			if left[shard] == 0 && h.shardDone[shard].IsZero() {
				h.shardDone[shard] = now
			}
		}
		if len(left) == 0 && !h.paused.IsZero() {
			h.allDone = now
			break
		}
	}
	h.waited = time.Since(cut)
	return h
}

// metricsOK reads node i's metrics and says whether they hold line; a node
// that does not answer does not.
func (c *testCluster) metricsOK(i int, line string) bool {
	return strings.Contains(c.metricsText(i), "\n"+line+"\n")
}

// metricValue is node i's value of an unlabelled metric; -1 when unknown.
func (c *testCluster) metricValue(i int, name string) float64 {
	_, rest, ok := strings.Cut(c.metricsText(i), "\n"+name+" ")
	if !ok {
		return -1
	}
	line, _, _ := strings.Cut(rest, "\n")
	v, err := strconv.ParseFloat(line, 64)
	if err != nil {
		return -1
	}
	return v
}

// metricsText is node i's /metrics, or "" when it does not answer.
func (c *testCluster) metricsText(i int) string {
	req, err := http.NewRequest(http.MethodGet, "https://"+c.admins[i]+"/metrics", nil)
	if err != nil {
		return ""
	}
	if c.net.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.net.adminToken)
	}
	resp, err := c.https.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// dumpOnMissing logs each node's state and goroutines and fails the test.
func (c *testCluster) dumpOnMissing(missing, of int, when string) {
	c.t.Helper()
	for i := range c.admins {
		st := c.status(i)
		b, _ := json.Marshal(struct {
			Sources any
			Streams any
			Cluster any
		}{st.Sources, st.Streams, st.Cluster})
		c.t.Logf("node-%d: %s", i+1, b)
	}
	c.t.Logf("owners %v", c.sls.Owners("sluice"))
	for _, cmd := range c.cmds {
		if cmd != nil {
			_ = cmd.Process.Signal(syscall.SIGQUIT) // goroutine dumps into the node logs
		}
	}
	time.Sleep(2 * time.Second)
	c.t.Fatalf("%d of %d routed records missing %s", missing, of, when)
}

func since(from, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(from).Round(100 * time.Millisecond).String()
}

func sinceAll(from time.Time, ts map[int]time.Time) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(ts)) {
		out = append(out, fmt.Sprintf("shard %d %s", k, since(from, ts[k])))
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// routeTLS trusts the cluster CA and presents no certificate.
func (c *testCluster) routeTLS() *tls.Config {
	c.t.Helper()
	ca, err := os.ReadFile(filepath.Join(c.certs, "ca.pem"))
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{RootCAs: pool, ServerName: "node-1"}
}

func keys(m map[int]int64) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}
