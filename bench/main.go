// Command bench runs sluice's benchmarks: go -C bench run . SCENARIO [flags].
// Each prints throughput per CPU core of the measured process, wall
// throughput, peak RSS and, where it applies, latency; medians of runs.
//
// bench is a module of its own, so that what only it needs (plotting,
// profile reading) stays out of the product's go.mod; it builds against the
// repository's sluice (the replace in go.mod). It finds the repository's
// files (the shipped policies, the sources it builds the sluice binary
// from) from its root, wherever it runs inside the repository; file names
// given in flags are relative to the working directory (bench/ under
// go -C bench).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/node"
)

func main() {
	// Nodes run in this process: give it the limit `sluice run` sets.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(node.DefaultMemoryLimit))
	}
	go node.ReleaseMemoryWhenIdle(context.Background(), slog.New(slog.DiscardHandler))
	scenarios := map[string]func([]string) error{
		"queue":    queueBench,
		"e2e":      e2eBench,
		"stages":   stagesBench,
		"outage":   outageBench,
		"gcs":      gcsBench,
		"replay":   replayBench,
		"cluster":  clusterBench,
		"chaos":    chaosBench,
		"failover": failoverBench,
		"bigquery": bigqueryBench,
		"owners":   ownersCmd,
	}
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(os.Args) < 2 || scenarios[os.Args[1]] == nil {
		fmt.Fprintf(os.Stderr, "usage: go -C bench run . SCENARIO [flags]\nscenarios: %s\n", strings.Join(names, ", "))
		os.Exit(2)
	}
	if err := scenarios[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
