package sls

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/queue"
)

// subjectRecords reads every RAW message on subject with a fresh consumer
// and counts its records by "seq"; msgs is how many messages it read.
func subjectRecords(t *testing.T, q *queue.Queue, subject string) (seqs map[string]int, msgs int) {
	t.Helper()
	name := fmt.Sprint("check-", time.Now().UnixNano())
	c, err := q.Consumer(context.Background(), queue.ConsumerConfig{Stream: queue.StreamRaw, Durable: name, Subject: subject, MaxAckPending: 10000})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Close()
		_ = q.JetStream().DeleteConsumer(context.Background(), queue.StreamRaw, name)
	}()
	seqs = map[string]int{}
	for {
		d, err := c.Next(context.Background(), 300*time.Millisecond)
		if err != nil {
			return seqs, msgs
		}
		msgs++
		rs, err := batch.Decode(d.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			var m map[string]string
			if err := json.Unmarshal(r, &m); err != nil {
				t.Fatalf("record %s: %v", r, err)
			}
			seqs[m["seq"]]++
		}
	}
}

// smallGroups makes n log groups of per audit logs each, seq numbered from
// first*per on.
func smallGroups(first, n, per int) []*sdk.LogGroup {
	r := rand.New(rand.NewPCG(uint64(first), 1))
	var out []*sdk.LogGroup
	for g := first; g < first+n; g++ {
		lg := &sdk.LogGroup{Topic: proto.String("audit_log"), Source: proto.String("10.0.0.1"),
			LogTags: []*sdk.LogTag{{Key: proto.String("__hostname__"), Value: proto.String("ecs-001")}}}
		for i := 0; i < per; i++ {
			lg.Logs = append(lg.Logs, slstest.AuditLog(r, g*per+i, time.Now()))
		}
		out = append(out, lg)
	}
	return out
}

// Two sources may read one logstore with their own consumer groups (other
// policies, other sinks): neither's batches may pass for the other's.
func TestTwoSourcesOnOneLogstoreEachStoreEveryLogGroup(t *testing.T) {
	s := newStandIn(t, 1)
	for _, lg := range smallGroups(0, 10, 4) {
		s.Put(0, lg)
	}
	q := newQueue(t, t.TempDir(), 64<<20)
	start(t, q, testConfig(s, func(c *Config) { c.Name, c.ConsumerGroup = "audit", "sluice" }), "n1")
	start(t, q, testConfig(s, func(c *Config) { c.Name, c.ConsumerGroup = "audit-copy", "sluice-copy" }), "n1")
	waitFor(t, 15*time.Second, "both groups checkpointed to the end", func() bool {
		return s.CheckpointPosition("sluice", 0) == 10 && s.CheckpointPosition("sluice-copy", 0) == 10
	})
	for _, src := range []string{"audit", "audit-copy"} {
		seqs, msgs := subjectRecords(t, q, queue.RawSubject(src))
		if msgs != 10 || len(seqs) != 40 {
			t.Errorf("%s holds %d messages, %d distinct records; want 10 log groups, 40 records", queue.RawSubject(src), msgs, len(seqs))
		}
	}
}
