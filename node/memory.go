package node

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory held for nothing: after a burst (a backlog written while Splunk
// is down, say) the heap is mostly garbage and pooled JetStream block
// buffers, which go only after two collections; an idle process collects
// every two minutes at best, so RSS stayed at ~310 MB for minutes where a
// collection leaves ~95 MB (bench outage).
const (
	idleCheckEvery = 10 * time.Second
	// A node allocating less than this between checks is idle, or nearly:
	// moving data, it allocates ~20 bytes per byte (1 GB a second at
	// 50 MB/s), and this is ~0.3 MB/s of data. Scrapes, retries and
	// heartbeats stay well below it.
	idleAllocBytes = 64 << 20
)

// ReleaseMemoryWhenIdle collects twice and returns the freed memory to the
// OS once the process goes idle, and again only after it was busy since.
// It runs until ctx ends. The memory limit (node.memory_limit) bounds the
// heap while busy; this bounds it while idle.
func ReleaseMemoryWhenIdle(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(idleCheckEvery)
	defer t.Stop()
	var idle idleDetector
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if idle.release(heapAllocated()) {
			before := heapInUse()
			runtime.GC() // pools keep their items until the second collection
			debug.FreeOSMemory()
			log.Debug("idle: memory returned to the OS", "heap_before", before, "heap_after", heapInUse())
		}
	}
}

// idleDetector says when to release: the first check that finds the
// process idle after it was busy.
type idleDetector struct {
	last     uint64
	released bool
	started  bool
}

func (d *idleDetector) release(allocated uint64) bool {
	delta := allocated - d.last
	d.last = allocated
	if !d.started {
		d.started = true
		return false
	}
	if delta >= idleAllocBytes {
		d.released = false
		return false
	}
	if d.released {
		return false
	}
	d.released = true
	return true
}

func heapAllocated() uint64 { return readUint64("/gc/heap/allocs:bytes") }

func heapInUse() uint64 { return readUint64("/memory/classes/heap/objects:bytes") }

func readUint64(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
