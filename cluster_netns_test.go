package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// TestClusterPartitionedNodeStoresNothingUntilHealed cuts one node's
// cluster link mid-stream. The majority goes on delivering; the cut-off
// node still reaches SLS but cannot replicate, so it checkpoints nothing;
// after the link is back, nothing is missing.
func TestClusterPartitionedNodeStoresNothingUntilHealed(t *testing.T) {
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
		routes:     []string{"10.201.0.11:6222", "10.201.0.12:6222", "10.201.0.13:6222"},
		admins:     []string{"10.202.0.11:8686", "10.202.0.12:8686", "10.202.0.13:8686"},
		standins:   "10.202.0.1:0",
		adminToken: "partition-test-admin-token",
		wrap: func(i int, argv []string) []string {
			return append([]string{"ip", "netns", "exec", lab.ns(i)}, argv...)
		},
	}
	c := startTestClusterOn(t, "TestClusterPartitionedNodeStoresNothingUntilHealed", records, net)
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
	lab.must("link", "set", lab.clusterLink(2), "down")
	cutAt := len(c.delivered())
	c.putRest()
	time.Sleep(4 * time.Second) // what node-3 replicated before the cut may still be checkpointed
	owned := func() map[int]int64 {
		cp := map[int]int64{}
		for shard, owner := range c.sls.Owners("sluice") {
			if strings.HasPrefix(owner, "node-3") {
				cp[shard] = c.sls.CheckpointPosition("sluice", shard)
			}
		}
		return cp
	}
	before := owned()
	// The majority elects new leaders for what node-3 led (RAFT election
	// timeouts are seconds; under the race detector, more), then delivers.
	for deadline := time.Now().Add(60 * time.Second); len(c.delivered()) <= cutAt && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(4 * time.Second)
	after := owned()
	for shard, pos := range before {
		if p, ok := after[shard]; ok && p != pos {
			t.Errorf("node-3, cut off from its peers, moved the checkpoint of shard %d: %d → %d", shard, pos, p)
		}
	}
	during := len(c.delivered())
	if during <= cutAt {
		t.Errorf("the majority delivered nothing within 60s of the partition (%d before, %d after)", cutAt, during)
	}
	lab.must("link", "set", lab.clusterLink(2), "up")
	_, missing, dups := c.waitAll(want, 120*time.Second)
	if missing > 0 {
		for i := range c.admins {
			st := c.status(i)
			b, _ := json.Marshal(struct {
				Sources any
				Streams any
				Cluster any
			}{st.Sources, st.Streams, st.Cluster})
			t.Logf("node-%d: %s", i+1, b)
		}
		t.Logf("owners %v", c.sls.Owners("sluice"))
		for _, cmd := range c.cmds {
			if cmd != nil {
				_ = cmd.Process.Signal(syscall.SIGQUIT) // goroutine dumps into the node logs
			}
		}
		time.Sleep(2 * time.Second)
		t.Fatalf("%d of %d routed records missing after the partition healed (cut at %d, %d during)", missing, len(want), cutAt, during)
	}
	t.Logf("cut node-3 off after %d of %d records; the majority delivered %d during the partition (node-3 held shards %v, checkpoints unmoved); all arrived after healing, %d duplicates",
		cutAt, len(want), during-cutAt, keys(before), dups)
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

// routeHello connects to a route port (with TLS when cfg is set, as the
// server wants it first) and returns the server's first line.
func routeHello(addr string, cfg *tls.Config) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	conn := c
	if cfg != nil {
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		conn = tc
	} else if _, err := fmt.Fprint(c, "CONNECT {}\r\nPING\r\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
}

func keys(m map[int]int64) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}
