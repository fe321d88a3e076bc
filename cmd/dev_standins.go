package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/actors/fetch/gcs/gcstest"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/actors/sink/bigquery/bqtest"
	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
)

// devStandIns are the outside services dev runs in this process; those
// not asked for are nil.
type devStandIns struct {
	sls    *slstest.Server
	gcs    *gcstest.Server
	bq     *bqtest.Server
	hec    *hectest.Server // nil with --hec-url
	hecURL string
	// closers in the order their stand-ins started; close runs them in
	// reverse.
	closers []func()
}

func (si *devStandIns) onClose(f func()) { si.closers = append(si.closers, f) }

func (si *devStandIns) close() {
	for i := len(si.closers) - 1; i >= 0; i-- {
		si.closers[i]()
	}
}

// startStandIns starts the stand-ins o asks for; on an error it closes
// those already started.
func startStandIns(stdout io.Writer, o devOptions, f *devFiles) (_ *devStandIns, err error) {
	si := &devStandIns{}
	defer func() {
		if err != nil {
			si.close()
		}
	}()
	if o.sls() {
		si.sls, err = slstest.NewServer(slstest.Options{Project: "dev", Logstore: "audit", Shards: o.shards,
			AccessKeyID: "dev-key-id", AccessKeySecret: f.secrets["SLUICE_DEV_SLS_KEY"], StateFile: filepath.Join(o.dataDir, "sls-standin-state.json")})
		if err != nil {
			return nil, err
		}
		si.onClose(si.sls.Close)
		si.sls.Preload(1, o.records, devEpoch)
	}
	if o.gcs() {
		if si.gcs, err = startDevGCS(o); err != nil {
			return nil, err
		}
		si.onClose(si.gcs.Close)
		// Swarm's GitHub audit policy writes BigQuery rows.
		if si.bq, err = bqtest.NewServer(bqtest.Options{Project: "sluice-dev"}); err != nil {
			return nil, err
		}
		si.onClose(si.bq.Close)
		si.onClose(func() { dumpBigQuery(stdout, si.bq, filepath.Join(o.dataDir, "bigquery")) })
	}
	if err = si.startHEC(o, f); err != nil {
		return nil, err
	}
	return si, nil
}

// startHEC starts the HEC stand-in, writing what it accepts to the data
// directory, unless --hec-url names a real one.
func (si *devStandIns) startHEC(o devOptions, f *devFiles) error {
	if o.hecURL != "" {
		si.hecURL = o.hecURL
		f.secrets["SLUICE_DEV_HEC_TOKEN"] = o.hecToken
		if o.hecToken == "" {
			f.secrets["SLUICE_DEV_HEC_TOKEN"] = os.Getenv("SPLUNK_HEC_TOKEN")
		}
		return nil
	}
	out, err := os.OpenFile(f.hecFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	si.onClose(func() { _ = out.Close() })
	hec, err := hectest.NewServer(hectest.Options{Token: f.secrets["SLUICE_DEV_HEC_TOKEN"], Out: out})
	if err != nil {
		return err
	}
	si.hec, si.hecURL = hec, hec.URL
	si.onClose(hec.Close)
	if o.splunkDownFor > 0 {
		hec.Down()
		time.AfterFunc(o.splunkDownFor, func() { _ = hec.Up() })
	}
	return nil
}

func hecFileOr(hec *hectest.Server, file string) string {
	if hec == nil {
		return "(external HEC)"
	}
	return file
}

// startDevGCS runs the GCS and Pub/Sub stand-ins in this process, points
// the Google clients at them the way any emulator is found, and preloads
// them. They start afresh each run (nothing of them is kept in the data
// directory).
func startDevGCS(o devOptions) (*gcstest.Server, error) {
	s, err := gcstest.Start(gcstest.Options{Bucket: "github-audit-logs"})
	if err != nil {
		return nil, err
	}
	os.Setenv("STORAGE_EMULATOR_HOST", s.StorageHost())
	os.Setenv("PUBSUB_EMULATOR_HOST", s.PubSubHost())
	if _, err := s.Preload(context.Background(), o.gcsObjects, gcsPerObject); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func standInLines(o devOptions, sls *slstest.Server, gcs *gcstest.Server, bq *bqtest.Server) string {
	var b strings.Builder
	if sls != nil {
		fmt.Fprintf(&b, "  SLS stand-in %s  project dev, logstore audit, %d shards, %d sample logs\n", sls.Endpoint, o.shards, sls.Logs())
	}
	if gcs != nil {
		fmt.Fprintf(&b, "  GCS stand-in %s  bucket github-audit-logs, %d objects of %d GitHub audit records\n", gcs.StorageHost(), o.gcsObjects, gcsPerObject)
		fmt.Fprintf(&b, "  Pub/Sub      %s  subscription sluice (PUBSUB_EMULATOR_HOST)\n", gcs.PubSubHost())
		fmt.Fprintf(&b, "  BigQuery     %s (write API %s)  rows to %s/<dataset>.<table>.ndjson when dev stops\n", bq.URL, bq.GRPCAddr, filepath.Join(o.dataDir, "bigquery"))
	}
	return b.String()
}

// dumpBigQuery writes each stand-in table's rows as JSON lines, since the
// stand-in keeps them in memory only.
func dumpBigQuery(w io.Writer, bq *bqtest.Server, dir string) {
	tables := bq.Tables("sluice-dev")
	if len(tables) == 0 {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(w, "BigQuery rows:", err)
		return
	}
	for _, t := range tables {
		path, n, err := bq.DumpFile("sluice-dev", t, dir)
		if err != nil {
			fmt.Fprintf(w, "BigQuery table %s: %v\n", t, err)
			continue
		}
		fmt.Fprintf(w, "BigQuery table %s: %d rows in %s\n", t, n, path)
	}
}
