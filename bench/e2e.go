package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/queue"
)

// pipeline is a node in this process with the default policy, reading an
// SLS stand-in and writing to a HEC stand-in, both other processes.
type pipeline struct {
	n      *node.Node
	cancel context.CancelFunc
	done   chan error
	stages []jetstream.Consumer // the transform's and the sink's, once looked up
}

// startPipeline runs the node of the single-node scenarios; its buffer
// holds maxBytes (0: 8 GiB).
func startPipeline(dir, slsAddr, hecAddr string, maxBytes conf.ByteSize) (*pipeline, error) {
	return startNode(dir, slsAddr, hecAddr, "bench", "", maxBytes)
}

// startNode runs one node named name; extra is appended to its config (a
// cluster section).
func startNode(dir, slsAddr, hecAddr, name, extra string, maxBytes conf.ByteSize) (*pipeline, error) {
	if maxBytes == 0 {
		maxBytes = 8 << 30
	}
	policies, err := repoPath("testdata", "policies")
	if err != nil {
		return nil, err
	}
	yaml := fmt.Sprintf(`node:
  name: %s
  data_dir: %q
  admin_listen: 127.0.0.1:0
  log_level: error
queue:
  max_bytes: %s
policies:
  dir: %q
  watch: false
sources:
  - name: audit
    type: sls
    endpoint: http://%s
    project: dev
    logstore: audit
    consumer_group: bench
    access_key_id: %s
    access_key_secret: %s
    heartbeat_interval: 2s
    fetch_interval: 20ms
    checkpoint_interval: 1s
sinks:
  - name: splunk
    type: splunk_hec
    url: http://%s
    token: %s
    index: main
    max_backoff: 1s
`, name, dir, maxBytes, policies, slsAddr, benchAKID, benchAKKey, hecAddr, benchToken) + extra
	cfg, err := node.Parse([]byte(yaml), builtin.Registry(), func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, err
	}
	n, err := node.New(cfg, node.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- n.Run(ctx) }()
	select {
	case <-n.Started():
		return p, nil
	case err := <-p.done:
		return nil, err
	}
}

func (p *pipeline) stop() { p.cancel(); <-p.done }

func (p *pipeline) metric(name string, match map[string]string) float64 {
	return node.MetricSum(p.n.Registry, name, match)
}

// drained: every record pulled, and nothing waiting or unacked anywhere.
// It runs every 50 ms inside the measured process, so the cheap check
// comes first: the two stages' consumers (a request each). Gathering the
// metrics asks JetStream about every stream and consumer (~15 requests),
// which polled this often cost ~10 % of e2e's and a drain's CPU.
func (p *pipeline) drained(records int) bool {
	ctx := context.Background()
	if p.stages == nil {
		for _, c := range [][2]string{{queue.StreamRaw, "transform"}, {queue.StreamOut, "sink-splunk"}} {
			cons, err := p.n.Queue.JetStream().Consumer(ctx, c[0], c[1])
			if err != nil {
				return false
			}
			p.stages = append(p.stages, cons)
		}
	}
	for _, c := range p.stages {
		if ci, err := c.Info(ctx); err != nil || ci.NumPending > 0 || ci.NumAckPending > 0 {
			return false
		}
	}
	if p.metric("sluice_sls_records_total", nil) < float64(records) {
		return false
	}
	idle, err := p.n.Queue.Idle(ctx)
	return err == nil && idle
}

// quantile reads a quantile off a histogram by linear interpolation.
func quantile(reg prometheus.Gatherer, name string, q float64) float64 {
	fams, _ := reg.Gather()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		var buckets []*dto.Bucket
		var total uint64
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			total += h.GetSampleCount()
			buckets = append(buckets, h.GetBucket()...)
		}
		sort.Slice(buckets, func(i, j int) bool { return buckets[i].GetUpperBound() < buckets[j].GetUpperBound() })
		want := q * float64(total)
		prevBound, prevCount := 0.0, 0.0
		for _, b := range buckets {
			c := float64(b.GetCumulativeCount())
			if c >= want {
				if c == prevCount {
					return b.GetUpperBound()
				}
				return prevBound + (b.GetUpperBound()-prevBound)*(want-prevCount)/(c-prevCount)
			}
			prevBound, prevCount = b.GetUpperBound(), c
		}
	}
	return 0
}

func e2eBench(args []string) error {
	fs := flag.NewFlagSet("e2e", flag.ExitOnError)
	mb, runs := sizeFlags(fs, 200, "MB of 1 KB audit records in the SLS stand-in (1000 = the issue's 1 GB)", 3, "runs; medians are printed")
	shards := fs.Int("shards", 4, "SLS shards")
	rate := fs.Float64("latency-rate", 5, "MB/s offered for the latency run (0: skip it)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the first run to this file")
	tmp, bin := setUp(fs, args)
	defer os.RemoveAll(tmp)
	records := *mb * 1000
	fmt.Printf("e2e: SLS stand-in (%d records of ~1 KB, %d shards) → RAW → default policy → OUT → HEC stand-in; stand-ins in their own processes\n", records, *shards)
	var spans []span
	for r := 0; r < *runs; r++ {
		var s span
		var err error
		run := func() (err error) {
			s, err = e2eRun(bin, filepath.Join(tmp, fmt.Sprint("run", r)), records, *shards)
			return err
		}
		if r == 0 && *profile != "" {
			err = profiled(filepath.Dir(*profile), strings.TrimSuffix(filepath.Base(*profile), ".pprof"), run)
		} else {
			err = run()
		}
		if err != nil {
			return err
		}
		if r == 0 && *profile != "" {
			if err := printBound(os.Stdout, *profile, s, goal{mb: 100}); err != nil {
				fmt.Fprintln(os.Stderr, "bound:", err)
			}
		}
		spans = append(spans, s)
	}
	printRow("e2e (bytes pulled from SLS)", spans)
	fmt.Printf("peak RSS of the node process %d MB\n", peakRSS()>>20)
	if *rate > 0 {
		return latencyRun(bin, filepath.Join(tmp, "latency"), *rate, *shards)
	}
	return nil
}

func e2eRun(bin, dir string, records, shards int) (span, error) {
	st, err := startStandins(bin, records, shards)
	if err != nil {
		return span{}, err
	}
	defer st.stop()
	var p *pipeline
	s, err := measure(func() (int64, int64, error) {
		p, err = startPipeline(dir, st.sls, st.hec, 0)
		if err != nil {
			return 0, 0, err
		}
		for !p.drained(records) {
			time.Sleep(50 * time.Millisecond)
		}
		return int64(p.metric("sluice_sls_bytes_total", nil)), int64(p.metric("sluice_sls_records_total", nil)), nil
	})
	if p != nil {
		p.stop()
	}
	return s, err
}

// latencyRun offers mbps for 40 s and reads fetch-to-Splunk latency off the
// sink's histogram.
func latencyRun(bin, dir string, mbps float64, shards int) error {
	st, err := startStandins(bin, 0, shards, "--rate", fmt.Sprint(mbps), "--rate-for", "40s")
	if err != nil {
		return err
	}
	defer st.stop()
	p, err := startPipeline(dir, st.sls, st.hec, 0)
	if err != nil {
		return err
	}
	c0 := cpuTime()
	time.Sleep(45 * time.Second)
	cpu := cpuTime() - c0
	reg := p.n.Registry
	fmt.Printf("latency at %.1f MB/s offered: fetch-to-Splunk p50 %.0f ms, p99 %.0f ms over %.0f batches; node CPU %.0f%% of a core\n",
		mbps, 1000*quantile(reg, "sluice_sink_delivery_latency_seconds", 0.5), 1000*quantile(reg, "sluice_sink_delivery_latency_seconds", 0.99),
		node.MetricSum(reg, "sluice_sink_delivery_latency_seconds", nil), 100*cpu.Seconds()/45)
	p.stop()
	return nil
}
