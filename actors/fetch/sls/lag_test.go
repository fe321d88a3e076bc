package sls

import (
	"testing"
	"time"
)

// The lag is the age of what waits to be read: it keeps growing while the
// source is stalled (here RAW is full and no pull is stored), instead of
// freezing at the last successful pull's figure.
func TestLagGrowsWhileTheSourceIsStalled(t *testing.T) {
	s := newStandIn(t, 1)
	s.Preload(2, 12000, time.Now().Add(-time.Minute)) // ~12 MB for a RAW of ~5 MB; a record a millisecond from a minute ago
	_, r := startUntilRAWIsFull(t, s, 0)
	first := lagOf(t, r, "0")

	time.Sleep(3 * time.Second)
	if later := lagOf(t, r, "0"); later < first+2 {
		t.Fatalf("lag %.1fs, then %.1fs 3s later while the source was stalled: want it to grow with the wait", first, later)
	}
}

// lagOf reads sluice_sls_lag_seconds for a shard (-1 when absent).
func lagOf(t *testing.T, r *running, shard string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_sls_lag_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "shard" && l.GetValue() == shard {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
