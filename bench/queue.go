package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// queueBench measures the buffer alone: publish-and-wait, then pull-and-ack,
// of 1 KB records on file storage, for several records-per-message sizes.
func queueBench(args []string) error {
	fs := flag.NewFlagSet("queue", flag.ExitOnError)
	totalMB := fs.Int("mb", 200, "MB of 1 KB records per run")
	runs := fs.Int("runs", 3, "runs per size; the median is printed")
	sync := fs.String("sync", "interval", "queue sync policy: interval or always")
	_ = fs.Parse(args)

	record := make([]byte, 1024)
	for i := range record {
		record[i] = 'a' + byte(i%26)
	}
	fmt.Printf("queue: %d MB of 1 KB records per run, file storage, sync %s, %d runs\n", *totalMB, *sync, *runs)
	for _, perMsg := range []int{1, 16, 64, 128} {
		var pubs, pulls []span
		for r := 0; r < *runs; r++ {
			p, c, err := queueRun(*totalMB<<20, perMsg, record, queue.Sync(*sync))
			if err != nil {
				return err
			}
			pubs, pulls = append(pubs, p), append(pulls, c)
		}
		printRow(fmt.Sprintf("publish-and-wait, %d rec/msg", perMsg), pubs)
		printRow(fmt.Sprintf("pull-and-ack,     %d rec/msg", perMsg), pulls)
	}
	fmt.Printf("peak RSS %d MB\n", peakRSS()>>20)
	return nil
}

func queueRun(total, perMsg int, record []byte, sync queue.Sync) (pub, pull span, err error) {
	dir, err := os.MkdirTemp("", "sluice-bench-queue-")
	if err != nil {
		return
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	q, err := queue.Start(ctx, queue.Options{DataDir: dir, MaxBytes: int64(total) * 4, Sync: sync})
	if err != nil {
		return
	}
	defer q.Close()
	recs := make([][]byte, perMsg)
	for i := range recs {
		recs[i] = record
	}
	body := batch.Encode(recs)
	nMsgs := total / len(body)
	pub, err = measure(func() (int64, int64, error) {
		const window = 256
		msgs := make([]*nats.Msg, 0, window)
		for i := 0; i < nMsgs; i++ {
			h := nats.Header{}
			h.Set(batch.HeaderMsgID, "bench/"+strconv.Itoa(i))
			h.Set(batch.HeaderCount, strconv.Itoa(perMsg))
			msgs = append(msgs, &nats.Msg{Subject: queue.RawSubject("bench"), Header: h, Data: body})
			if len(msgs) == window || i == nMsgs-1 {
				if err := q.PublishMessages(ctx, msgs); err != nil {
					return 0, 0, err
				}
				msgs = msgs[:0]
			}
		}
		return int64(nMsgs * perMsg * len(record)), int64(nMsgs * perMsg), nil
	})
	if err != nil {
		return
	}
	c, err := q.Consumer(ctx, queue.ConsumerConfig{Stream: queue.StreamRaw, Durable: "bench", Subject: "raw.>", MaxAckPending: 1024})
	if err != nil {
		return
	}
	pull, err = measure(func() (int64, int64, error) {
		// Up to 1,024 deliveries a pull, as a sink takes them (FetchReady):
		// a pull request per message would measure pull requests.
		for i := 0; i < nMsgs; {
			ds, err := c.FetchReady(ctx, 1024, 10*time.Second)
			if err != nil {
				return 0, 0, fmt.Errorf("after %d of %d: %w", i, nMsgs, err)
			}
			for _, d := range ds {
				recs, err := batch.Decode(d.Data)
				if err != nil || len(recs) != perMsg {
					return 0, 0, errors.Join(errors.New("bad batch"), err)
				}
				if err := d.Ack(); err != nil {
					return 0, 0, err
				}
			}
			i += len(ds)
		}
		return int64(nMsgs * perMsg * len(record)), int64(nMsgs * perMsg), nil
	})
	return
}
