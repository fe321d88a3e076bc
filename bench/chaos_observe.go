package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/aliyun/aliyun-log-go-sdk/producer"
	"github.com/gogo/protobuf/proto"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
)

// writer feeds SLS at the offered rate through the SDK's producer, as an
// application would, each log with a unique seq and its send time.
type writer struct {
	c      *chaosRun
	p      *producer.Producer
	client sls.ClientInterface // for what the producer would refuse (oversized)
	// oversized asks for a log whose record outgrows a buffer message.
	oversized chan struct{}
	// shardKeys[i] is a hash key the stand-in routes to shard i: each
	// list goes to the next shard, so the ledger knows every seq's shard.
	shardKeys []string
	done      chan struct{}
	stopped   chan struct{}
	mu        sync.Mutex
	failed    int // records the producer gave up on
}

func startWriter(c *chaosRun) (*writer, error) {
	pc := producer.GetDefaultProducerConfig()
	pc.Endpoint, pc.AccessKeyID, pc.AccessKeySecret, pc.HTTPClient = c.sls.Endpoint, benchAKID, benchAKKey, c.sls.HTTPClient()
	pc.LingerMs = 100
	pc.AdjustShargHash = false      // shardKeys name the stand-in's shards as they are
	pc.DisableRuntimeMetrics = true // its monitor races with SafeClose in v0.1.131
	pc.AllowLogLevel, pc.LogFileName = "warn", filepath.Join(c.opts.out, "producer.log")
	p, err := producer.NewProducer(pc)
	if err != nil {
		return nil, fmt.Errorf("sls producer: %w", err)
	}
	p.Start()
	client := sls.CreateNormalInterface(c.sls.Endpoint, benchAKID, benchAKKey, "")
	client.SetHTTPClient(c.sls.HTTPClient())
	w := &writer{c: c, p: p, client: client, oversized: make(chan struct{}, 4), shardKeys: shardKeys(chaosShards), done: make(chan struct{}), stopped: make(chan struct{})}
	go w.run()
	return w, nil
}

// run sends lists of 64 logs whenever the bytes sent fall behind the rate.
func (w *writer) run() {
	defer close(w.stopped)
	r := rand.New(rand.NewPCG(w.c.opts.seed, 1))
	t0 := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var seq int
	var sent float64
	for {
		select {
		case <-w.done:
			return
		case <-w.oversized:
			w.putOversized(seq)
			seq++
			continue
		case <-tick.C:
		}
		target := w.c.opts.rate * 1e6 * time.Since(t0).Seconds()
		for sent < target {
			now := time.Now()
			logs := make([]*sls.Log, 64)
			var size int
			for i := range logs {
				l := slstest.AuditLog(r, seq+i, now)
				l.Contents = append(l.Contents, &sls.LogContent{Key: proto.String("sent_ms"), Value: proto.String(strconv.FormatInt(now.UnixMilli(), 10))})
				logs[i] = l
				size += proto.Size(l)
			}
			from, to := seq, seq+len(logs)
			shard := (from / len(logs)) % len(w.shardKeys)
			seq = to
			sent += float64(size)
			w.c.ledger.sent(from, to, shard)
			cb := &sendResult{w: w, from: from, to: to, bytes: int64(size)}
			if err := w.p.HashSendLogListWithCallBack("chaos", "audit", w.shardKeys[shard], "audit_log", "10.0.0.1", logs, cb); err != nil {
				cb.Fail(nil)
			}
		}
	}
}

// chaosShards is how many shards the SLS stand-in's logstore has.
const chaosShards = 4

// shardKeys finds, for each of n shards, a hash key that the SLS stand-in
// routes to it (FNV-1a of the key, modulo the shards).
func shardKeys(n int) []string {
	keys := make([]string, n)
	for found, k := 0, 0; found < n; k++ {
		key := fmt.Sprintf("%032x", k)
		h := fnv.New32a()
		h.Write([]byte(key))
		if i := int(h.Sum32() % uint32(n)); keys[i] == "" {
			keys[i] = key
			found++
		}
	}
	return keys
}

// putOversized writes one log whose record is over 9 MB as JSON (1.5 MB
// of control characters, each escaped as \u0001), more than a buffer
// message carries: it must reach the DLQ, the rest of its shard flow.
func (w *writer) putOversized(seq int) {
	now := time.Now()
	l := slstest.EscapedLog(seq, 1_500_000, now)
	l.Contents = append(l.Contents, &sls.LogContent{Key: proto.String("sent_ms"), Value: proto.String(strconv.FormatInt(now.UnixMilli(), 10))})
	w.c.ledger.sent(seq, seq+1, -1)
	err := w.client.PutLogs("chaos", "audit", &sls.LogGroup{Topic: proto.String("audit_log"), Source: proto.String("10.0.0.1"), Logs: []*sls.Log{l}})
	w.c.ledger.confirm(seq, seq+1, err == nil, int64(proto.Size(l)))
	if err != nil {
		w.c.eventf("oversized: PutLogs: %v", err)
		return
	}
	w.c.eventf("oversized: seq %d, a record of ~9 MB as JSON, written", seq)
}

// stop ends writing and waits until the producer has an answer for
// every list it took.
func (w *writer) stop() {
	close(w.done)
	<-w.stopped
	w.p.SafeClose()
}

type sendResult struct {
	w        *writer
	from, to int
	bytes    int64
}

func (s *sendResult) Success(*producer.Result) { s.w.c.ledger.confirm(s.from, s.to, true, s.bytes) }

func (s *sendResult) Fail(*producer.Result) {
	s.w.c.ledger.confirm(s.from, s.to, false, 0)
	s.w.mu.Lock()
	s.w.failed += s.to - s.from
	s.w.mu.Unlock()
}

// chaosSample is the state of the run at one second.
type chaosSample struct {
	at                  time.Duration
	produced, delivered int
	prodRate, delivRate float64 // records/s over the last interval
	p99                 time.Duration
	rss, goroutines     []float64 // per node; NaN while down
	fds                 []float64
}

// sampler records a sample a second and keeps the nodes' counters across
// their restarts.
type sampler struct {
	c        *chaosRun
	mu       sync.Mutex
	samples  []chaosSample
	counters map[string]*counter // "<node>/<what>"
	done     chan struct{}
	finished chan struct{}
	client   *http.Client
}

// counter sums a Prometheus counter over a node's lives: it restarts at 0.
type counter struct{ base, last float64 }

func (k *counter) observe(v float64) {
	if v < k.last {
		k.base += k.last
	}
	k.last = v
}

func (k *counter) total() float64 { return k.base + k.last }

func newSampler(c *chaosRun) *sampler {
	return &sampler{c: c, counters: map[string]*counter{}, done: make(chan struct{}), finished: make(chan struct{}),
		client: &http.Client{Timeout: 2 * time.Second}}
}

func (s *sampler) run() {
	defer close(s.finished)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prev chaosSample
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		snap := s.c.ledger.snapshot()
		cur := chaosSample{at: time.Since(s.c.start), produced: snap.produced, delivered: snap.unique, p99: snap.p99}
		dt := (cur.at - prev.at).Seconds()
		cur.prodRate = float64(cur.produced-prev.produced) / dt
		cur.delivRate = float64(cur.delivered-prev.delivered) / dt
		for _, n := range s.c.nodes {
			rss, fds, gor := math.NaN(), math.NaN(), math.NaN()
			if pid := n.pid(); pid != 0 {
				rss = float64(procStatus(pid, "VmRSS:"))
				n.mu.Lock()
				n.peakRSS = max(n.peakRSS, procStatus(pid, "VmHWM:"))
				n.mu.Unlock()
				if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
					fds = float64(len(ents))
				}
				gor = s.scrape(n)
			}
			cur.rss, cur.fds, cur.goroutines = append(cur.rss, rss), append(cur.fds, fds), append(cur.goroutines, gor)
		}
		s.mu.Lock()
		s.samples = append(s.samples, cur)
		s.mu.Unlock()
		prev = cur
	}
}

func (s *sampler) stop() { close(s.done); <-s.finished }

// scrape reads a node's /metrics: its goroutines, and the counters the
// report needs.
func (s *sampler) scrape(n *chaosNode) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+benchAdminToken)
	resp, err := s.client.Do(req)
	if err != nil {
		return math.NaN()
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil && len(fams) == 0 {
		return math.NaN()
	}
	sum := func(name, label, value string) float64 {
		var t float64
		if f := fams[name]; f != nil {
			for _, m := range f.GetMetric() {
				ok := label == ""
				for _, l := range m.GetLabel() {
					if l.GetName() == label && l.GetValue() == value {
						ok = true
					}
				}
				if ok {
					t += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
		return t
	}
	s.mu.Lock()
	for what, v := range map[string]float64{
		"buffer_full":    sum("sluice_queue_publish_errors_total", "reason", "buffer_full"),
		"reload_failed":  sum("sluice_policy_reloads_total", "result", "failed"),
		"sink_dlq":       sum("sluice_sink_dlq_events_total", "", ""),
		"actor_restarts": sum("sluice_actor_restarts_total", "", ""),
	} {
		k := s.counters[n.name+"/"+what]
		if k == nil {
			k = &counter{}
			s.counters[n.name+"/"+what] = k
		}
		k.observe(v)
	}
	s.mu.Unlock()
	return sum("go_goroutines", "", "")
}

// total sums a tracked counter over the nodes.
func (s *sampler) total(what string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t float64
	for _, n := range s.c.nodes {
		if k := s.counters[n.name+"/"+what]; k != nil {
			t += k.total()
		}
	}
	return t
}

// procStatus reads a "<field> N kB" line of /proc/PID/status, in bytes.
func procStatus(pid int, field string) int64 {
	return statusFileBytes(fmt.Sprintf("/proc/%d/status", pid), field)
}
