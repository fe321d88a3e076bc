package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/sluicehq/sluice/internal/conf"
)

// outageBench: Splunk down while everything is fetched and transformed;
// the RSS while the backlog waits on disk; then the drain rate once
// Splunk is back.
func outageBench(args []string) error {
	fs := flag.NewFlagSet("outage", flag.ExitOnError)
	mb := fs.Int("mb", 200, "MB of 1 KB audit records (1000 = the issue's 1 GB)")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file while the backlog waits")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the drain to this file")
	rate := fs.Float64("rate", 0, "MB/s: the SLS stand-in makes the records while they are fetched, instead of holding them all in memory (for backlogs of many GB)")
	tmp, bin := setUp(fs, args)
	defer os.RemoveAll(tmp)
	records := *mb * 1000
	slsAddr, hecAddr := freeAddr(), freeAddr()
	var slsCmd *exec.Cmd
	var err error
	var generating time.Duration
	if *rate > 0 {
		generating = time.Duration(float64(*mb) / *rate * float64(time.Second))
		slsCmd, err = startSLS(bin, slsAddr, 0, 4, "--rate", fmt.Sprint(*rate), "--rate-for", generating.String(), "--trim-consumed", "10s")
	} else {
		slsCmd, err = startSLS(bin, slsAddr, records, 4)
	}
	if err != nil {
		return err
	}
	defer stop(slsCmd)
	// Room for the whole backlog in RAW and OUT; nothing listens on hecAddr yet.
	p, err := startPipeline(filepath.Join(tmp, "node"), slsAddr, hecAddr, max(8<<30, conf.ByteSize(*mb)<<21))
	if err != nil {
		return err
	}
	defer p.stop()
	start := time.Now()
	if *rate > 0 {
		// The stand-in's records: all that the fetcher pulled once the
		// generator stopped and the transform caught up.
		records = waitSettled(p, start.Add(generating))
	}
	for p.metric("sluice_transform_records_total", nil) < float64(records) {
		time.Sleep(100 * time.Millisecond)
	}
	fetched := time.Since(start)
	time.Sleep(3 * time.Second) // let the backlog settle
	backlog := p.metric("sluice_stream_bytes", map[string]string{"stream": "OUT"})
	rss := currentRSS()
	time.Sleep(30 * time.Second) // and once the runtime has returned what it freed
	rssLater := currentRSS()
	// What a collection would return: JetStream's pooled block buffers stay
	// until two collections, which an idle process makes only every 2 min.
	runtime.GC()
	debug.FreeOSMemory()
	fmt.Printf("RSS after a forced collection: %d MB\n", currentRSS()>>20)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("while the backlog waits: Go heap in use %d MB, heap idle not returned %d MB, stacks %d MB, GC cycles %d\n",
		ms.HeapInuse>>20, (ms.HeapIdle-ms.HeapReleased)>>20, ms.StackInuse>>20, ms.NumGC)
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			return err
		}
	}
	drain, err := drainAfterOutage(p, bin, hecAddr, records, *cpuProfile)
	if err != nil {
		return err
	}
	fmt.Printf("outage: %d records fetched and transformed in %.1fs with Splunk down; OUT backlog %.0f MB on disk; RSS while it waits %d MB, %d MB 30 s later\n",
		records, fetched.Seconds(), backlog/1e6, rss>>20, rssLater>>20)
	printRow("drain after the outage (event bytes)", []span{drain})
	return nil
}

// drainAfterOutage starts the Splunk stand-in and measures the drain of
// the backlog, under a CPU profile if one is asked for.
func drainAfterOutage(p *pipeline, bin, hecAddr string, records int, cpuProfile string) (span, error) {
	hecCmd, err := startHEC(bin, hecAddr)
	if err != nil {
		return span{}, err
	}
	defer stop(hecCmd)
	stopProfile, err := startProfile(cpuProfile)
	if err != nil {
		return span{}, err
	}
	drain, err := measure(func() (int64, int64, error) {
		for !p.drained(records) {
			time.Sleep(50 * time.Millisecond)
		}
		return int64(p.metric("sluice_sink_bytes_total", nil)), int64(p.metric("sluice_sink_events_total", nil)), nil
	})
	stopProfile()
	if err != nil {
		return span{}, err
	}
	if cpuProfile != "" {
		if err := printBound(os.Stdout, cpuProfile, drain, goal{mb: 150}); err != nil {
			fmt.Fprintln(os.Stderr, "bound:", err)
		}
	}
	return drain, nil
}

// waitSettled waits past until, then until fetching has stopped and the
// transform has every fetched record; it returns how many there were.
func waitSettled(p *pipeline, until time.Time) int {
	last, still := -1.0, 0
	for {
		time.Sleep(time.Second)
		n := p.metric("sluice_sls_records_total", nil)
		if time.Now().After(until) && n == last && p.metric("sluice_transform_records_total", nil) >= n {
			if still++; still >= 3 {
				return int(n)
			}
		} else {
			still = 0
		}
		last = n
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}
