package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// outageBench: Splunk down while everything is fetched and transformed;
// the RSS while the backlog waits on disk; then the drain rate once
// Splunk is back.
func outageBench(args []string) error {
	fs := flag.NewFlagSet("outage", flag.ExitOnError)
	mb := fs.Int("mb", 200, "MB of 1 KB audit records (1000 = the issue's 1 GB)")
	_ = fs.Parse(args)
	tmp, bin, err := workspace("outage")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	records := *mb * 1000
	slsAddr, hecAddr := freeAddr(), freeAddr()
	slsCmd, err := startSLS(bin, slsAddr, records, 4)
	if err != nil {
		return err
	}
	defer stop(slsCmd)
	p, err := startPipeline(filepath.Join(tmp, "node"), slsAddr, hecAddr, 4) // nothing listens on hecAddr yet
	if err != nil {
		return err
	}
	defer p.stop()
	start := time.Now()
	for p.metric("sluice_transform_records_total", nil) < float64(records) {
		time.Sleep(100 * time.Millisecond)
	}
	fetched := time.Since(start)
	time.Sleep(3 * time.Second) // let the backlog settle
	backlog := p.metric("sluice_stream_bytes", map[string]string{"stream": "OUT"})
	rss := currentRSS()
	hecCmd, err := startHEC(bin, hecAddr)
	if err != nil {
		return err
	}
	defer stop(hecCmd)
	drain, err := measure(func() (int64, int64, error) {
		for !p.drained(records) {
			time.Sleep(50 * time.Millisecond)
		}
		return int64(p.metric("sluice_sink_bytes_total", nil)), int64(p.metric("sluice_sink_events_total", nil)), nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("outage: %d records fetched and transformed in %.1fs with Splunk down; OUT backlog %.0f MB on disk; RSS while it waits %d MB\n",
		records, fetched.Seconds(), backlog/1e6, rss>>20)
	printRow("drain after the outage (event bytes)", []span{drain})
	return nil
}
