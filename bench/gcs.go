package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/fetch/gcs"
	"github.com/sluicehq/sluice/node"
)

// gcsBench measures the GCS source alone: gzip'd JSON-lines objects in the
// GCS stand-in, announced through the Pub/Sub stand-in (their own
// process), read into RAW by this process.
func gcsBench(args []string) error {
	fs := flag.NewFlagSet("gcs", flag.ExitOnError)
	mb, runs := sizeFlags(fs, 1000, "MB (uncompressed) of ~1 KB GitHub audit records", 1, "runs; medians are printed")
	perObject := fs.Int("records-per-object", 1000, "records per object")
	inFlight := fs.Int("in-flight", 4, "max_objects_in_flight")
	tmp, bin := setUp(fs, args)
	defer os.RemoveAll(tmp)
	records := *mb * 1000
	objects := (records + *perObject - 1) / *perObject
	var spans []span
	for i := 0; i < *runs; i++ {
		s, err := gcsRun(bin, filepath.Join(tmp, fmt.Sprint("run", i)), objects, *perObject, *inFlight)
		if err != nil {
			return err
		}
		spans = append(spans, s)
	}
	fmt.Printf("gcs: %d gzip'd JSON-lines objects of %d records (~1 KB each), max_objects_in_flight %d\n", objects, *perObject, *inFlight)
	printRow("fetch: GCS stand-in → RAW (uncompressed bytes)", spans)
	fmt.Printf("peak RSS %d MB\n", peakRSS()>>20)
	return nil
}

func gcsRun(bin, dir string, objects, perObject, inFlight int) (span, error) {
	gcsAddr, psAddr := freeAddr(), freeAddr()
	cmd, err := startProcess(bin, "emulate", "gcs", "--listen", gcsAddr, "--pubsub-listen", psAddr,
		"--objects", fmt.Sprint(objects), "--records-per-object", fmt.Sprint(perObject))
	if err != nil {
		return span{}, err
	}
	defer stop(cmd)
	// The clients find the stand-ins as they find any emulator.
	os.Setenv("STORAGE_EMULATOR_HOST", gcsAddr)
	os.Setenv("PUBSUB_EMULATOR_HOST", psAddr)
	r, err := newRig(dir)
	if err != nil {
		return span{}, err
	}
	defer r.q.Close()
	reg := prometheus.NewRegistry()
	cfg := &gcs.Config{Name: "github", Type: "gcs", Project: "sluice-dev", Subscription: "sluice", Schema: "github_audit", MaxObjectsInFlight: inFlight}
	f, err := gcs.New(cfg, gcs.Deps{Queue: r.q, Logger: r.log, Metrics: reg})
	if err != nil {
		return span{}, err
	}
	want := float64(objects * perObject)
	return r.run(actors.StageFetch, "gcs", f,
		func() bool { return node.MetricSum(reg, "sluice_gcs_records_total", nil) >= want },
		func() (int64, int64) {
			return int64(node.MetricSum(reg, "sluice_gcs_record_bytes_total", nil)), int64(node.MetricSum(reg, "sluice_gcs_records_total", nil))
		})
}
