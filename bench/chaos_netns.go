package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
)

// chaosNet puts each node in its own network namespace with two links: a
// cluster link (routes, to a bridge of its peers) and a service link (to
// a bridge where this process runs the stand-ins and reads the nodes'
// admin and NATS ports). The partition fault takes a node's cluster link
// down: it loses its peers and still reaches SLS and Splunk.
//
// Names carry a random tag, so two runs (or a run and the root package's
// partition test) never share a namespace, a link or a subnet.
type chaosNet struct {
	tag       string // a few hex digits; every name starts with "sc"+tag
	svcNet    string // "10.211.K": the service /24, this process at .1
	clusterNt string // "10.212.K": the cluster /24
	nodes     int
	made      []func() error // undo steps, in the order to run them
}

// netnsNeeds says why the namespaces cannot be made here, or "".
func netnsNeeds() string {
	if os.Geteuid() != 0 {
		return "the partition fault needs root (network namespaces, bridges and veths): run as root or leave partition out of --faults"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "the partition fault needs the ip command (iproute2)"
	}
	return ""
}

// newChaosNet builds the namespaces, bridges and links for n nodes; on an
// error it has undone what it made.
func newChaosNet(n int) (*chaosNet, error) {
	if why := netnsNeeds(); why != "" {
		return nil, errors.New(why)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	used, _ := exec.Command("ip", "-4", "-o", "addr").Output()
	k := int(b[2])
	for strings.Contains(string(used), fmt.Sprintf(" 10.211.%d.", k)) {
		k = (k + 1) % 256
	}
	net := &chaosNet{tag: hex.EncodeToString(b[:2]), svcNet: fmt.Sprintf("10.211.%d", k), clusterNt: fmt.Sprintf("10.212.%d", k), nodes: n}
	if err := net.build(); err != nil {
		net.teardown()
		return nil, err
	}
	return net, nil
}

func (n *chaosNet) name(s string) string { return "sc" + n.tag + s }

func (n *chaosNet) ns(i int) string { return n.name(fmt.Sprintf("n%d", i+1)) }

// clusterVeth is the root end of node i's cluster link.
func (n *chaosNet) clusterVeth(i int) string { return n.name(fmt.Sprintf("c%d", i+1)) }

// ServiceIP and ClusterIP are node i's addresses; HostIP is this process's.
func (n *chaosNet) ServiceIP(i int) string { return fmt.Sprintf("%s.%d", n.svcNet, 11+i) }
func (n *chaosNet) ClusterIP(i int) string { return fmt.Sprintf("%s.%d", n.clusterNt, 11+i) }
func (n *chaosNet) HostIP() string         { return n.svcNet + ".1" }

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// add runs an ip command and, when it worked, notes how to undo it.
func (n *chaosNet) add(undo []string, args ...string) error {
	if err := ipCmd(args...); err != nil {
		return err
	}
	if undo != nil {
		n.made = append([]func() error{func() error { return ipCmd(undo...) }}, n.made...)
	}
	return nil
}

func (n *chaosNet) build() error {
	for _, br := range []string{"bc", "bs"} {
		if err := n.add([]string{"link", "del", n.name(br)}, "link", "add", n.name(br), "type", "bridge"); err != nil {
			return err
		}
		if err := ipCmd("link", "set", n.name(br), "up"); err != nil {
			return err
		}
	}
	if err := ipCmd("addr", "add", n.HostIP()+"/24", "dev", n.name("bs")); err != nil {
		return err
	}
	for i := range n.nodes {
		if err := n.add([]string{"netns", "del", n.ns(i)}, "netns", "add", n.ns(i)); err != nil {
			return err
		}
		if err := ipCmd("-n", n.ns(i), "link", "set", "lo", "up"); err != nil {
			return err
		}
		if err := n.link(i, "c", "bc", n.ClusterIP(i)); err != nil {
			return err
		}
		if err := n.link(i, "s", "bs", n.ServiceIP(i)); err != nil {
			return err
		}
	}
	return nil
}

// link joins node i's namespace to a bridge with a veth pair, the inner
// end holding addr.
func (n *chaosNet) link(i int, kind, bridge, addr string) error {
	outer := n.name(fmt.Sprintf("%s%d", kind, i+1))
	inner := outer + "i"
	steps := [][]string{
		{"link", "set", inner, "netns", n.ns(i)},
		{"link", "set", outer, "master", n.name(bridge)},
		{"link", "set", outer, "up"},
		{"-n", n.ns(i), "addr", "add", addr + "/24", "dev", inner},
		{"-n", n.ns(i), "link", "set", inner, "up"},
	}
	if err := n.add([]string{"link", "del", outer}, "link", "add", outer, "type", "veth", "peer", "name", inner); err != nil {
		return err
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	return nil
}

// wrap runs argv in node i's namespace (ip netns exec execs it: the
// process is the node's, its pid the one to signal).
func (n *chaosNet) wrap(i int, argv []string) []string {
	return append([]string{"ip", "netns", "exec", n.ns(i)}, argv...)
}

// cut takes node i's cluster link down (up when heal), as a failed switch
// port between racks would.
func (n *chaosNet) cut(i int, heal bool) error {
	state := "down"
	if heal {
		state = "up"
	}
	return ipCmd("link", "set", n.clusterVeth(i), state)
}

// teardown removes what build made, newest first: the veths (their inner
// ends go with them), the namespaces, the bridges. Call it after the
// nodes have exited.
func (n *chaosNet) teardown() {
	for _, undo := range n.made {
		if err := undo(); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			fmt.Fprintf(os.Stderr, "chaos: cleaning up the network: %v\n", err)
		}
	}
	n.made = nil
}

// onInterrupt runs cleanup and exits when the run is interrupted (Ctrl-C,
// SIGTERM), so no namespace, bridge or veth outlives it; the returned
// func stops watching.
func onInterrupt(cleanup func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			fmt.Fprintf(os.Stderr, "chaos: %v: stopping the nodes and removing the network\n", s)
			cleanup()
			os.Exit(130)
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// partition cuts node i's cluster link; the returned func heals it.
func (c *chaosRun) partition(i int) (heal func()) {
	if c.net == nil {
		c.violation("partition: the nodes do not run in network namespaces")
		return func() {}
	}
	if err := c.net.cut(i, false); err != nil {
		c.violation("partition: %v", err)
		return func() {}
	}
	return func() {
		if err := c.net.cut(i, true); err != nil {
			c.violation("partition: heal: %v", err)
		}
	}
}
