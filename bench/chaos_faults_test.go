package main

import (
	"slices"
	"strings"
	"testing"
	"time"
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
