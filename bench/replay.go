package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/node/ops"
)

// replayBench: fill the buffer through the whole pipeline, then replay the
// retained window to the HEC stand-in, several times, measuring each replay
// from the job's start until the stand-in accepted every replayed event.
func replayBench(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ExitOnError)
	mb, runs := sizeFlags(fs, 200, "MB of 1 KB audit records fetched first (1000 = the issue's 1 GB)", 3, "replays of the window")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the replays to this file")
	tmp, bin := setUp(fs, args)
	defer os.RemoveAll(tmp)
	records := *mb * 1000
	st, err := startStandins(bin, records, 4)
	if err != nil {
		return err
	}
	defer st.stop()
	p, err := startPipeline(filepath.Join(tmp, "node"), st.sls, st.hec, 0)
	if err != nil {
		return err
	}
	defer p.stop()
	from := time.Now()
	for !p.drained(records) {
		time.Sleep(100 * time.Millisecond)
	}
	to := time.Now()
	delivered := p.metric("sluice_sink_events_total", nil)
	fmt.Printf("replay: %d records fetched, %0.f routed to Splunk and delivered; OUT holds %.0f MB\n",
		records, delivered, p.metric("sluice_stream_bytes", map[string]string{"stream": "OUT"})/1e6)

	stopProfile, err := startProfile(*profile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx := context.Background()
	var spans []span
	for i := 0; i < *runs; i++ {
		events0, bytes0 := p.metric("sluice_sink_events_total", nil), p.metric("sluice_sink_bytes_total", nil)
		s, err := measure(func() (int64, int64, error) {
			plan, job, err := p.n.Ops.Replay(ctx, ops.ReplayRequest{Sink: "splunk", From: from, To: to})
			if err != nil {
				return 0, 0, err
			}
			if float64(plan.Records) != delivered {
				return 0, 0, fmt.Errorf("replay plan has %d records, %0.f were delivered", plan.Records, delivered)
			}
			for job.Status().State == ops.JobRunning || p.metric("sluice_sink_events_total", nil) < events0+delivered {
				if st := job.Status(); st.State == ops.JobFailed {
					return 0, 0, fmt.Errorf("replay job: %s", st.Error)
				}
				time.Sleep(20 * time.Millisecond)
			}
			return int64(p.metric("sluice_sink_bytes_total", nil) - bytes0), int64(p.metric("sluice_sink_events_total", nil) - events0), nil
		})
		if err != nil {
			return err
		}
		spans = append(spans, s)
		fmt.Printf("  run %d: %.1f MB/s/core, %.0f rec/s/core, %.1f MB/s wall\n", i+1, s.mbPerCore(), s.recPerCore(), s.mbWall())
	}
	printRow("replay to HEC (event bytes)", spans)
	fmt.Printf("peak RSS %d MB\n", peakRSS()>>20)
	return nil
}
