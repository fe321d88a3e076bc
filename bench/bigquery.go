package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/fetch/gcs/gcstest"
	"github.com/sluicehq/sluice/actors/sink/bigquery"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// bigqueryBench drains a backlog of ~1 KB GitHub audit rows from OUT into
// the BigQuery stand-in (its own process, keeping no rows): rows/s and
// MB/s per core of this process, which runs the sink and the buffer.
func bigqueryBench(args []string) error {
	fs := flag.NewFlagSet("bigquery", flag.ExitOnError)
	mb, runs := sizeFlags(fs, 200, "MB of rows in OUT", 3, "runs; medians are printed")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the first run's drain to this file")
	tmp, bin := setUp(fs, args)
	defer os.RemoveAll(tmp)
	var spans []span
	for r := 0; r < *runs; r++ {
		p := ""
		if r == 0 {
			p = *profile
		}
		s, err := bigqueryRun(bin, filepath.Join(tmp, fmt.Sprint("run", r)), *mb, p)
		if err != nil {
			return err
		}
		spans = append(spans, s)
		fmt.Printf("run %d: %.1f MB/s/core, %.0f rows/s/core, %.1f MB/s wall\n", r+1, s.mbPerCore(), s.recPerCore(), s.mbWall())
	}
	printRow(fmt.Sprintf("bigquery: OUT → stand-in, %d MB", *mb), spans)
	fmt.Printf("peak RSS of this process: %d MB\n", peakRSS()>>20)
	return nil
}

func bigqueryRun(bin, dir string, mb int, profile string) (span, error) {
	addr, grpcAddr := freeAddr(), freeAddr()
	cmd, err := startProcess(bin, "emulate", "bigquery", "--listen", addr, "--grpc-listen", grpcAddr, "--project", "bench", "--discard")
	if err != nil {
		return span{}, err
	}
	defer stop(cmd)
	r, err := newRig(dir)
	if err != nil {
		return span{}, err
	}
	defer r.q.Close()
	// The backlog: 64 rows a message, as the transform writes them.
	var total, size int64
	var msgs []*nats.Msg
	for i := 0; size < int64(mb)*1e6; i++ {
		var recs [][]byte
		for j := 0; j < 64; j++ {
			// As Swarm's github_audit policy leaves it: @timestamp is no column name.
			data := bytes.Replace(gcstest.SampleRecord(i*64+j), []byte(`"@timestamp":`), []byte(`"ts_ms":`), 1)
			rec, _ := json.Marshal(batch.Output{ID: fmt.Sprint("doc-", i*64+j), Timestamp: 1732480000.5, Dataset: "github", Table: "audit", Data: data})
			recs = append(recs, rec)
			size += int64(len(data))
		}
		total += 64
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprint("bq-", i))
		h.Set(batch.HeaderCount, "64")
		msgs = append(msgs, &nats.Msg{Subject: queue.OutSubject("bigquery"), Header: h, Data: batch.Encode(recs)})
		if len(msgs) == 256 {
			if err := r.q.PublishMessages(context.Background(), msgs); err != nil {
				return span{}, err
			}
			msgs = msgs[:0]
		}
	}
	if err := r.q.PublishMessages(context.Background(), msgs); err != nil {
		return span{}, err
	}
	reg := prometheus.NewRegistry()
	sink, err := bigquery.New(&bigquery.Config{Name: "bigquery", Type: "bigquery", Project: "bench", Endpoint: "http://" + addr, WriteEndpoint: grpcAddr,
		IntegerFields: []string{"actor_id", "created_at"}, MaxBackoff: conf.Duration(time.Second)}, bigquery.Deps{Queue: r.q, Logger: r.log, Metrics: reg})
	if err != nil {
		return span{}, err
	}
	stopProfile, err := startProfile(profile)
	if err != nil {
		return span{}, err
	}
	defer stopProfile()
	s, err := r.run(actors.StageSink, "bigquery", sink,
		func() bool {
			return node.MetricSum(reg, "sluice_sink_events_total", nil)+node.MetricSum(reg, "sluice_sink_dlq_events_total", nil) >= float64(total)
		},
		func() (int64, int64) { return size, total })
	if dead := node.MetricSum(reg, "sluice_sink_dlq_events_total", nil); dead > 0 {
		return s, fmt.Errorf("%.0f of %d rows went to the DLQ", dead, total)
	}
	return s, err
}
