package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/fetch/sls"
	"github.com/sluicehq/sluice/actors/sink/splunk"
	"github.com/sluicehq/sluice/actors/transform"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/rego"
)

// rig runs one stage at a time over one buffer, so each is measured alone:
// fetch fills RAW, transform turns RAW into OUT, the sink drains OUT.
type rig struct {
	q   *queue.Queue
	reg *prometheus.Registry
	log *slog.Logger
}

func newRig(dir string) (*rig, error) {
	reg := prometheus.NewRegistry()
	q, err := queue.Start(context.Background(), queue.Options{DataDir: dir, MaxBytes: 16 << 30, Metrics: reg})
	if err != nil {
		return nil, err
	}
	return &rig{q: q, reg: reg, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}, nil
}

// run runs one actor until done() and returns what it cost.
func (r *rig) run(stage actors.Stage, name string, a actors.Actor, done func() bool, count func() (int64, int64)) (span, error) {
	rt, err := actors.NewRuntime(r.log, prometheus.NewRegistry())
	if err != nil {
		return span{}, err
	}
	s, err := measure(func() (int64, int64, error) {
		rt.Add(stage, name, a)
		rt.Start(context.Background())
		for !done() {
			time.Sleep(20 * time.Millisecond)
		}
		b, n := count()
		return b, n, nil
	})
	_ = rt.Stop(30 * time.Second)
	return s, err
}

func (r *rig) fetch(endpoint string, records int) (span, error) {
	cfg := &sls.Config{Name: "audit", Type: "sls", Endpoint: "http://" + endpoint, Project: "dev", Logstore: "audit", ConsumerGroup: "bench",
		AccessKeyID: benchAKID, AccessKeySecret: conf.Secret(benchAKKey), HeartbeatInterval: conf.Duration(2 * time.Second),
		FetchInterval: conf.Duration(20 * time.Millisecond), CheckpointInterval: conf.Duration(time.Second)}
	reg := prometheus.NewRegistry()
	f, err := sls.New(cfg, sls.Deps{Queue: r.q, Logger: r.log, Metrics: reg, NodeName: "bench"})
	if err != nil {
		return span{}, err
	}
	return r.run(actors.StageFetch, "sls", f,
		func() bool { return node.MetricSum(reg, "sluice_sls_records_total", nil) >= float64(records) },
		func() (int64, int64) {
			return int64(node.MetricSum(reg, "sluice_sls_bytes_total", nil)), int64(node.MetricSum(reg, "sluice_sls_records_total", nil))
		})
}

func (r *rig) transform(rawBytes int64, fullEval bool) (span, error) {
	reg := prometheus.NewRegistry()
	policies, err := repoPath("testdata", "policies")
	if err != nil {
		return span{}, err
	}
	eng, err := rego.Load(policies, rego.Options{Metrics: reg, FullEval: fullEval})
	if err != nil {
		return span{}, err
	}
	t, err := transform.New(transform.Config{}, transform.Deps{Queue: r.q, Logger: r.log, Metrics: reg, Engine: eng, Sinks: map[string]string{"splunk": "splunk_hec"}, Types: builtin.Registry()})
	if err != nil {
		return span{}, err
	}
	total := int64(0)
	return r.run(actors.StageTransform, "transform", t, func() bool {
		c, err := r.q.JetStream().Consumer(context.Background(), queue.StreamRaw, "transform")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, func() (int64, int64) {
		total = int64(node.MetricSum(reg, "sluice_transform_records_total", nil))
		return rawBytes, total
	})
}

func (r *rig) sink(hecAddr string, gzip bool) (span, error) {
	reg := prometheus.NewRegistry()
	cfg := &splunk.Config{Name: "splunk", Type: "splunk_hec", URL: "http://" + hecAddr, Token: benchToken, Index: "main", Gzip: &gzip}
	s, err := splunk.New(cfg, splunk.Deps{Queue: r.q, Logger: r.log, Metrics: reg})
	if err != nil {
		return span{}, err
	}
	return r.run(actors.StageSink, "splunk", s, func() bool {
		idle, err := r.q.Idle(context.Background())
		return err == nil && idle && node.MetricSum(reg, "sluice_sink_events_total", nil) > 0
	}, func() (int64, int64) {
		return int64(node.MetricSum(reg, "sluice_sink_bytes_total", nil)), int64(node.MetricSum(reg, "sluice_sink_events_total", nil))
	})
}

// stagesBench measures fetch, transform and the sink one after another on
// the same data.
func stagesBench(args []string) error {
	fs := flag.NewFlagSet("stages", flag.ExitOnError)
	mb, runs := sizeFlags(fs, 200, "MB of 1 KB audit records", 3, "runs; medians are printed")
	only := fs.String("only", "fetch,transform,sink", "stages to print")
	profiles := fs.String("cpuprofile", "", "write a CPU profile of each stage of the first run to DIR/<stage>.pprof")
	tmp, bin := setUp(fs, args)
	defer os.RemoveAll(tmp)
	records := *mb * 1000
	rows := map[string][]span{}
	for i := 0; i < *runs; i++ {
		for _, gz := range []bool{true, false} {
			profileDir := ""
			if i == 0 && gz {
				profileDir = *profiles
			}
			spans, err := stagesRun(bin, filepath.Join(tmp, fmt.Sprintf("run%d-%v", i, gz)), records, gz, profileDir)
			if err != nil {
				return err
			}
			if gz {
				rows["fetch: SLS stand-in → RAW"] = append(rows["fetch: SLS stand-in → RAW"], spans[0])
				rows["transform: RAW → policy → OUT"] = append(rows["transform: RAW → policy → OUT"], spans[1])
				rows["sink: OUT → HEC, gzip"] = append(rows["sink: OUT → HEC, gzip"], spans[2])
			} else {
				// The run without gzip evaluates every record through OPA:
				// the same data, so the two transform rows compare the paths.
				rows["transform, OPA only (no fast path)"] = append(rows["transform, OPA only (no fast path)"], spans[1])
				rows["sink: OUT → HEC, no gzip"] = append(rows["sink: OUT → HEC, no gzip"], spans[2])
			}
		}
	}
	fmt.Printf("stages: %d records of ~1 KB; each stage alone in this process, stand-ins in their own\n", records)
	for _, name := range []string{"fetch: SLS stand-in → RAW", "transform: RAW → policy → OUT", "transform, OPA only (no fast path)", "sink: OUT → HEC, gzip", "sink: OUT → HEC, no gzip"} {
		if strings.Contains(*only, strings.FieldsFunc(name, func(r rune) bool { return r == ':' || r == ',' })[0]) {
			printRow(name, rows[name])
		}
	}
	fmt.Printf("peak RSS %d MB\n", peakRSS()>>20)
	return nil
}

func stagesRun(bin, dir string, records int, gz bool, profileDir string) ([]span, error) {
	st, err := startStandins(bin, records, 4)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	r, err := newRig(dir)
	if err != nil {
		return nil, err
	}
	defer r.q.Close()
	var f, t, s span
	err = profiled(profileDir, "fetch", func() (err error) { f, err = r.fetch(st.sls, records); return err })
	if err != nil {
		return nil, err
	}
	err = profiled(profileDir, "transform", func() (err error) { t, err = r.transform(f.bytes, !gz); return err })
	if err != nil {
		return nil, err
	}
	if profileDir != "" {
		if err := printBound(os.Stdout, filepath.Join(profileDir, "transform.pprof"), t, goal{records: 200_000}); err != nil {
			fmt.Fprintln(os.Stderr, "bound:", err)
		}
	}
	err = profiled(profileDir, "sink", func() (err error) { s, err = r.sink(st.hec, gz); return err })
	if err != nil {
		return nil, err
	}
	return []span{f, t, s}, nil
}

// profiled runs f under a CPU profile written to dir/name.pprof; no dir,
// no profile.
func profiled(dir, name string, f func() error) error {
	path := ""
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		path = filepath.Join(dir, name+".pprof")
	}
	stop, err := startProfile(path)
	if err != nil {
		return err
	}
	defer stop()
	return f()
}

// startProfile starts a CPU profile into path ("": none) and returns what
// stops it, which also writes what was allocated since the process started
// beside it, as <name>.allocs.pprof (for the first run or stage, that run),
// and prints the profile's CPU by owner.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	out, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
		if a, err := os.Create(strings.TrimSuffix(path, ".pprof") + ".allocs.pprof"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(a, 0)
			a.Close()
		}
		if err := printCPUByOwner(os.Stdout, path); err != nil {
			fmt.Fprintln(os.Stderr, "CPU by owner:", err)
		}
	}, nil
}
