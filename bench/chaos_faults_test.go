package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
	"github.com/sluicehq/sluice/node"
)

// Partition, like quorum loss, needs three nodes; it needs network
// namespaces too: left out of "all" with a reason where there are none,
// an error when named, and it puts the nodes in namespaces otherwise.
func TestPlanFaultsPartition(t *testing.T) {
	noRoot := "the partition fault needs root"
	for _, tc := range []struct {
		name      string
		kinds     []string
		nodes     int
		named     bool
		why       string
		want      []string
		netns     bool
		note, err string
	}{
		{"one node, all", []string{"kill", "quorum-loss", "partition"}, 1, false, "", []string{"kill"}, false, "partition left out: it needs --nodes 3", ""},
		{"three nodes as root", []string{"kill", "partition", "second-source"}, 3, true, "", []string{"kill", "partition"}, true, "", ""},
		{"three nodes, all, no root", []string{"kill", "partition"}, 3, false, noRoot, []string{"kill"}, false, "partition left out: " + noRoot, ""},
		{"three nodes, named, no root", []string{"partition"}, 3, true, noRoot, nil, false, "", "--faults partition: " + noRoot},
		{"no partition, no root", []string{"kill", "hec-down"}, 3, true, noRoot, []string{"kill", "hec-down"}, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planFaults(tc.kinds, tc.nodes, tc.named, tc.why)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.faults, tc.want) || p.netns != tc.netns {
				t.Errorf("faults %v netns %v, want %v netns %v", p.faults, p.netns, tc.want, tc.netns)
			}
			if tc.note != "" && !slices.Contains(p.notes, tc.note) {
				t.Errorf("notes %q, want %q among them", p.notes, tc.note)
			}
		})
	}
}

// A partition is scheduled on one of the three nodes, past NATS's
// lost-quorum interval, and printed naming the node.
func TestSchedulePartition(t *testing.T) {
	for seed := range uint64(20) {
		for _, f := range schedule(seed, []string{"partition", "kill"}, 3, 5*time.Minute, time.Minute) {
			if f.Kind != "partition" {
				continue
			}
			if f.Node < 0 || f.Node > 2 || f.For < 25*time.Second {
				t.Fatalf("seed %d: %+v: want a node of three and a window of 25 s or more", seed, f)
			}
			if want := "node-"; !strings.Contains(f.String(), want) {
				t.Fatalf("%q names no node", f)
			}
		}
	}
}

// A node's config in a namespace, its admin, NATS and route ports on the
// bridges' addresses, passes sluice's own validation, as the loopback one
// does (off loopback, routes want TLS or cluster.insecure by name).
func TestNodeConfigValidatesOnBridges(t *testing.T) {
	secrets := map[string]string{"SLS_AK_KEY": benchAKKey, "SPLUNK_HEC_TOKEN": benchToken,
		"SLUICE_ADMIN_TOKEN": benchAdminToken, "SLUICE_NATS_OPERATOR_PASSWORD": benchNATSPassword}
	env := func(k string) (string, bool) { v, ok := secrets[k]; return v, ok }
	for _, net := range []*chaosNet{nil, {svcNet: "10.211.7", clusterNt: "10.212.7", nodes: 3}} {
		c := &chaosRun{opts: chaosOpts{nodes: 3, maxBytes: 64 << 20, dupWindow: 10 * time.Second, logLevel: "warn"},
			dir: t.TempDir(), policyDir: "../testdata/policies", net: net, sinkName: "splunk",
			sls: &slstest.Server{Endpoint: "http://" + standinHost(net) + ":1"}, hec: &hectest.Server{URL: "http://" + standinHost(net) + ":2"}}
		for i := range 3 {
			c.routes = append(c.routes, c.nodeAddr(i, "route"))
		}
		n := &chaosNode{name: "node-1", admin: c.nodeAddr(0, "admin"), nats: c.nodeAddr(0, "nats")}
		cfg := c.nodeConfig(n, c.routes, 0, c.opts.maxBytes)
		if _, err := node.Parse([]byte(cfg), builtin.Registry(), env); err != nil {
			t.Errorf("netns %v: %v\n%s", net != nil, err, cfg)
		}
	}
}

// standinHost is where the stand-ins listen for a net (nil: loopback).
func standinHost(net *chaosNet) string {
	if net == nil {
		return "127.0.0.1"
	}
	return net.HostIP()
}
