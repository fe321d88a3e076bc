package ops_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// mutate damages a record the way a broken exporter or a hostile source
// might: flipped, dropped, inserted and repeated bytes.
func mutate(r *rand.Rand, rec []byte) []byte {
	out := append([]byte(nil), rec...)
	for n := 1 + r.IntN(3); n > 0 && len(out) > 0; n-- {
		i := r.IntN(len(out))
		switch r.IntN(4) {
		case 0:
			out[i] = "{}[]\",:\\0123456789eE+-. \xff\xc3"[r.IntN(22)]
		case 1:
			out = append(out[:i], out[i+1:]...)
		case 2:
			out = append(out[:i], append([]byte{byte(r.IntN(256))}, out[i:]...)...)
		case 3:
			j := min(len(out), i+1+r.IntN(8))
			out = append(out[:j], append(append([]byte(nil), out[i:j]...), out[j:]...)...)
		}
	}
	return out
}

// 10,000 damaged audit records through a running node: each is delivered,
// dead-lettered with a reason, or dropped by the policy — none is lost, and
// no stage crashes on any of them.
func TestMutatedRecordsAreDeliveredOrDeadLetteredNeverLost(t *testing.T) {
	const total = 10_000
	p := startPipeline(t, "1h")
	ctx := context.Background()
	r := rand.New(rand.NewPCG(42, 1795))
	var msgs []*nats.Msg
	for b := 0; b < total/100; b++ {
		recs := make([][]byte, 100)
		for i := range recs {
			seq := b*100 + i
			rec := fmt.Appendf(nil, `{"@timestamp":%d,"action":"repo.create","actor":"user%d","seq":%d,"details":{"ip":"203.0.113.%d","tags":["a","b"]}}`,
				1795000000000+seq, seq%50, seq, seq%250)
			recs[i] = mutate(r, rec)
		}
		h := nats.Header{}
		h.Set(batch.HeaderMsgID, fmt.Sprintf("mutated/%d", b))
		h.Set(batch.HeaderSource, "github")
		h.Set(batch.HeaderSchema, "github_splunk")
		h.Set(batch.HeaderCount, "100")
		msgs = append(msgs, &nats.Msg{Subject: queue.RawSubject("github"), Header: h, Data: batch.Encode(recs)})
	}
	if err := p.n.Queue.PublishMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	var delivered, dead, dropped int
	var groups []ops.DLQGroup
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if groups, err = p.c.DLQGroups(ctx, ops.DLQFilter{}); err != nil {
			t.Fatal(err)
		}
		dead = 0
		for _, g := range groups {
			dead += g.Count
		}
		delivered = p.hec.Count()
		dropped = int(node.MetricSum(p.n.Registry, "sluice_transform_dropped_total", nil))
		if delivered+dead+dropped >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 120s: %d delivered + %d dead-lettered + %d dropped by policy = %d of %d", delivered, dead, dropped, delivered+dead+dropped, total)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := p.hec.Count() + dead + dropped; n != total {
		t.Fatalf("%d delivered + %d dead-lettered + %d dropped = %d, want exactly %d", p.hec.Count(), dead, dropped, n, total)
	}
	var reasons []string
	for _, g := range groups {
		if strings.TrimSpace(g.Reason) == "" {
			t.Fatalf("DLQ group without a reason: %+v", g)
		}
		reasons = append(reasons, fmt.Sprintf("%d× %s/%s: %.80s", g.Count, g.Stage, g.Name, g.Reason))
	}
	if restarts := node.MetricSum(p.n.Registry, "sluice_actor_restarts_total", nil); restarts != 0 {
		t.Fatalf("%v actor restarts: a stage crashed on a record", restarts)
	}
	if dead == 0 || delivered == 0 {
		t.Fatalf("the mutations should break some records and spare others: %d delivered, %d dead", delivered, dead)
	}
	t.Logf("%d delivered, %d dead-lettered, %d dropped by policy; %d DLQ reason groups, e.g.:\n%s", delivered, dead, dropped, len(reasons), strings.Join(reasons[:min(8, len(reasons))], "\n"))
}

func TestReasonClassGroupsParseErrors(t *testing.T) {
	a := ops.ReasonClass(`record r/1/0: record is not JSON: cannot parse JSON: cannot parse object: missing ':'; unparsed tail: "\"a\"1}"`, "r/1/0")
	b := ops.ReasonClass(`record r/2/5: record is not JSON: cannot parse JSON: cannot parse object: missing ':'; unparsed tail: "xyz"`, "r/2/5")
	if a != b || strings.Contains(a, "r/1/0") {
		t.Fatalf("classes differ or keep the record: %q vs %q", a, b)
	}
}
