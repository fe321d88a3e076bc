package main

import (
	"bytes"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"time"
)

// The writer's hash keys land on the shard they are for, as the SLS
// stand-in routes them (FNV-1a of the key, modulo the shards).
func TestShardKeysRouteToTheirShard(t *testing.T) {
	keys := shardKeys(chaosShards)
	for i, k := range keys {
		h := fnv.New32a()
		h.Write([]byte(k))
		if got := int(h.Sum32() % chaosShards); got != i {
			t.Errorf("key %q routes to shard %d, want %d", k, got, i)
		}
	}
}

// Flow resumed, on a synthetic ledger: for each shard, the first arrival
// of a record written at or after the fault, counted from the fault; a
// shard with no such arrival by the cutoff has not resumed (-1). Records
// written before the fault, however late they arrive, do not count.
func TestResumedOnASyntheticLedger(t *testing.T) {
	l := newLedger(func() int { return -1 })
	b := l.book("splunk")
	ms := func(n int) uint32 { return uint32(n) }
	// seq, shard, sent ms, arrived ms (0: never)
	for _, r := range [][4]int{
		{0, 0, 1000, 1200},  // before the fault
		{1, 1, 9000, 30000}, // before the fault, held up by it: not counted
		{2, 0, 10000, 10400},
		{3, 1, 10100, 25000},
		{4, 1, 10200, 21000}, // shard 1's first arrival after the fault
		{5, 2, 11000, 0},     // never arrived
		{6, 3, 10500, 95000}, // after the cutoff (healed)
		{7, 3, 12000, 14000},
	} {
		l.grow(r[0] + 1)
		l.state[r[0]], l.shard[r[0]], l.sentAt[r[0]] = seqProduced, int8(r[1]), ms(r[2])
		b.arrived[r[0]] = ms(r[3])
	}
	got := l.resumed(10*time.Second, 90*time.Second)[0]
	want := []time.Duration{400 * time.Millisecond, 11 * time.Second, -1, 4 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("resumed %v, want %v", got, want)
	}
	if allResumed([][]time.Duration{got}) || slowest(got, []int{2}, true) != -1 {
		t.Errorf("shard 2 did not resume: allResumed and slowest must say so")
	}
	if s := slowest(got, []int{2}, false); s != 11*time.Second {
		t.Errorf("slowest of the shards not held %s, want 11s", s)
	}
}

// The table has a row a run and the median, the node's shards apart
// from the others, a shard that did not resume shown as past the window
// and ordered after every time.
func TestPrintFailover(t *testing.T) {
	row := func(run int, a, b time.Duration, copies int) failoverRow {
		return failoverRow{run: run, fault: fault{Kind: "partition", Node: 2}, copies: copies,
			held:    [][]int{{0}, {0}},
			resumed: [][]time.Duration{{a, time.Second}, {b, 2 * time.Second}}}
	}
	var buf bytes.Buffer
	printFailover(&buf, []failoverRow{row(1, 5*time.Second, -1, 10), row(2, -1, -1, 0), row(3, 7*time.Second, 2*time.Second, 3)}, 90*time.Second)
	out := buf.String()
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{"run fault audit→splunk second→splunk2 copies missing", "3 partition node-3 7.0s / 1.0s 2.0s / 2.0s 3 0"} {
		if !slices.Contains(rows, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	median := strings.Fields(out[strings.Index(out, "median"):])
	if got, want := strings.Join(median[:10], " "), "median partition 7.0s / 1.0s >90s / 2.0s 3 0"; got != want {
		t.Errorf("median row %q, want %q", got, want)
	}
}
