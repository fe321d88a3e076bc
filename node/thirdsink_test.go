package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// A third sink type, known only to this test, added to the built-in
// registry: the node decodes its config, builds its actor, routes to it the
// outputs that name it and shows its description in status, with no line
// of node, transform or ops naming it. Every SLS record arrives there once
// and is acked.
func TestAThirdSinkTypeRunsThroughTheWholeNode(t *testing.T) {
	if testing.Short() {
		t.Skip("a node with an SLS stand-in")
	}
	s, err := slstest.NewServer(slstest.Options{Project: "p", Logstore: "audit", Shards: 2, AccessKeyID: "ak", AccessKeySecret: "sk"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	const records = 300
	s.Preload(7, records, time.Now().Add(-time.Minute))

	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	writePolicy(t, policies, "event.rego", `package event
src contains {"parser": "sls", "schema": "rows"} if input.logstore == "audit"`)
	writePolicy(t, policies, "schema/rows.rego", `package schema.rows
log contains {"sink": "tape", "timestamp": to_number(input.__time__), "data": {"seq": input.seq}}`)
	yaml := fmt.Sprintf(`
node: {name: third, data_dir: %q, admin_listen: "127.0.0.1:0"}
queue: {max_bytes: 64MiB}
policies: {dir: %q, watch: false}
transform: {ack_wait: 5s}
sources:
  - {name: audit, type: sls, endpoint: %q, project: p, logstore: audit, consumer_group: g, access_key_id: ak, access_key_secret: sk, fetch_interval: 50ms}
sinks:
  - {name: tape, type: tape, label: reel-1}
`, filepath.Join(dir, "data"), policies, s.Endpoint)

	// Without the type, the config is refused by name: nothing else knows it.
	if _, err := node.Parse([]byte(yaml), builtin.Registry(), os.LookupEnv); err == nil || !strings.Contains(err.Error(), `sinks[0].type (line 9): unknown type "tape"`) {
		t.Fatalf("the built-in registry took a tape sink: %v", err)
	}
	tp := &tape{seen: map[string]int{}}
	types := builtin.Registry()
	types.Add(tp.spec())
	n := runNode(t, yaml, types)

	waitUntil(t, 60*time.Second, "every record at the tape sink, acked", func() string {
		if seen, acked := tp.counts(); seen < records || acked < records {
			return fmt.Sprintf("%d of %d records seen, %d acked", seen, records, acked)
		}
		return ""
	})
	if dup := tp.duplicates(); dup != "" {
		t.Fatalf("records seen more than once: %s", dup)
	}
	st := n.Ops.Status(context.Background())
	if len(st.Sinks) != 1 || st.Sinks[0].Type != "tape" || st.Sinks[0].Detail != "reel reel-1" {
		t.Fatalf("status sinks %+v, want the tape sink described by its type", st.Sinks)
	}
}

// tape is the test's sink type: it keeps the seq of every record it takes
// from OUT, and acks each batch once it has them.
type tape struct {
	mu    sync.Mutex
	seen  map[string]int // seq → times seen
	acked int
}

type tapeConfig struct {
	Name  string `yaml:"name"`
	Type  string `yaml:"type"`
	Label string `yaml:"label"`
}

func (c *tapeConfig) SetDefaults() {}

func (c *tapeConfig) Validate() error {
	if c.Label == "" {
		return conf.Errorf("label", "required")
	}
	return nil
}

func (tp *tape) spec() *component.Spec {
	return component.Sink(component.Type[tapeConfig]{
		Name: "tape",
		New: func(c *tapeConfig, d component.Deps) (actors.Actor, error) {
			return actors.ActorFunc(func(ctx context.Context, h *actors.Health) error { return tp.run(ctx, h, c.Name, d.Queue) }), nil
		},
		Describe: func(c *tapeConfig) string { return "reel " + c.Label },
	})
}

func (tp *tape) run(ctx context.Context, h *actors.Health, name string, q *queue.Queue) error {
	cons, err := q.Consumer(ctx, queue.ConsumerConfig{Stream: queue.StreamOut, Durable: "sink-" + name, Subject: queue.OutSubject(name),
		AckWait: 10 * time.Second, Stage: "sink", Name: name})
	if err != nil {
		return err
	}
	defer cons.Close()
	h.SetHealthy()
	for ctx.Err() == nil {
		d, err := cons.Next(ctx, time.Second)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, queue.ErrNoMessage):
			continue
		case err != nil:
			return err
		}
		recs, err := batch.Decode(d.Data)
		if err != nil {
			return err
		}
		var seqs []string
		for _, r := range recs {
			var out struct {
				Data struct{ Seq string } `json:"data"`
			}
			if err := json.Unmarshal(r, &out); err != nil {
				return fmt.Errorf("record %s: %w", r, err)
			}
			seqs = append(seqs, out.Data.Seq)
		}
		if err := d.AckSync(ctx); err != nil {
			return err
		}
		tp.mu.Lock()
		for _, s := range seqs {
			tp.seen[s]++
		}
		tp.acked += len(seqs)
		tp.mu.Unlock()
	}
	return nil
}

func (tp *tape) counts() (seen, acked int) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.seen), tp.acked
}

func (tp *tape) duplicates() string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var dup []string
	for s, n := range tp.seen {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", s, n))
		}
	}
	return strings.Join(dup, ", ")
}
