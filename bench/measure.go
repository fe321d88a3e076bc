package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

// cpuTime is the CPU (user+system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is the process's peak resident set size in bytes.
func peakRSS() int64 { return statusBytes("VmHWM:") }

// currentRSS is the process's resident set size now, in bytes.
func currentRSS() int64 { return statusBytes("VmRSS:") }

// statusBytes reads a "<field> N kB" line of /proc/self/status.
func statusBytes(field string) int64 { return statusFileBytes("/proc/self/status", field) }

// statusFileBytes reads a "<field> N kB" line of a /proc status file.
func statusFileBytes(path, field string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}

// span measures one run: wall time and this process's CPU.
type span struct {
	wall, cpu time.Duration
	bytes     int64
	records   int64
}

func measure(f func() (bytes, records int64, err error)) (span, error) {
	c0, t0 := cpuTime(), time.Now()
	b, r, err := f()
	return span{wall: time.Since(t0), cpu: cpuTime() - c0, bytes: b, records: r}, err
}

func (s span) mbPerCore() float64  { return float64(s.bytes) / 1e6 / s.cpu.Seconds() }
func (s span) recPerCore() float64 { return float64(s.records) / s.cpu.Seconds() }
func (s span) mbWall() float64     { return float64(s.bytes) / 1e6 / s.wall.Seconds() }

// median of the runs by MB/s per core.
func median(runs []span) span {
	sorted := append([]span(nil), runs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].mbPerCore() < sorted[j].mbPerCore() })
	return sorted[len(sorted)/2]
}

func printRow(name string, runs []span) {
	m := median(runs)
	fmt.Printf("%-34s %9.1f MB/s/core %10.0f rec/s/core %8.1f MB/s wall  cpu %6.2fs  (median of %d)\n",
		name, m.mbPerCore(), m.recPerCore(), m.mbWall(), m.cpu.Seconds(), len(runs))
}
