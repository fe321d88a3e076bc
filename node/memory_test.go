package node

import (
	"runtime"
	"testing"
)

func TestIdleDetectorReleasesOnceAfterEachBusySpell(t *testing.T) {
	var d idleDetector
	var total uint64
	step := func(alloc uint64) bool { total += alloc; return d.release(total) }
	busy, quiet := uint64(idleAllocBytes*10), uint64(1<<20)
	for i, c := range []struct {
		alloc uint64
		want  bool
	}{
		{busy, false},  // the first reading only sets the base
		{busy, false},  // busy
		{quiet, true},  // went idle: release
		{quiet, false}, // still idle: once is enough
		{0, false},
		{busy, false}, // busy again
		{quiet, true}, // idle again: release again
	} {
		if got := step(c.alloc); got != c.want {
			t.Fatalf("check %d (allocated %d since the last): release %v, want %v", i, c.alloc, got, c.want)
		}
	}
}

// The metrics it reads exist under these names in this Go version.
func TestHeapMetricsAreRead(t *testing.T) {
	before := heapAllocated()
	sink := make([][]byte, 0, 64)
	for range 64 {
		sink = append(sink, make([]byte, 1<<16))
	}
	runtime.KeepAlive(sink)
	if after := heapAllocated(); after < before+(4<<20) {
		t.Fatalf("allocations counted %d → %d, want at least 4 MB more", before, after)
	}
	if heapInUse() == 0 {
		t.Fatal("heap in use reads 0")
	}
}
