// Command bench runs sluice's benchmarks: go run ./bench SCENARIO [flags].
// Each prints throughput per CPU core of the measured process, wall
// throughput, peak RSS and, where it applies, latency; medians of runs.
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
		fmt.Fprintf(os.Stderr, "usage: go run ./bench SCENARIO [flags]\nscenarios: %s\n", strings.Join(names, ", "))
		os.Exit(2)
	}
	if err := scenarios[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
