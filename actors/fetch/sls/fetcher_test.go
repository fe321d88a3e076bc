package sls

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/aliyun/aliyun-log-go-sdk/producer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

const (
	akID     = "LTAI5tTestKeyId"
	akSecret = "test-secret-value-never-logged"
)

func newStandIn(t *testing.T, shards int) *slstest.Server {
	t.Helper()
	s, err := slstest.NewServer(slstest.Options{Project: "proj", Logstore: "audit", Shards: shards, AccessKeyID: akID, AccessKeySecret: akSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newQueue(t *testing.T, dir string, maxBytes int64) *queue.Queue {
	t.Helper()
	q, err := queue.Start(context.Background(), queue.Options{DataDir: dir, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

func testConfig(s *slstest.Server, mod func(*Config)) *Config {
	c := &Config{Name: "audit", Type: "sls", Endpoint: s.Endpoint, Project: "proj", Logstore: "audit", ConsumerGroup: "sluice",
		AccessKeyID: akID, AccessKeySecret: akSecret, HeartbeatInterval: conf.Duration(time.Second),
		FetchInterval: conf.Duration(20 * time.Millisecond), CheckpointInterval: conf.Duration(100 * time.Millisecond)}
	if mod != nil {
		mod(c)
	}
	return c
}

type running struct {
	f    *Fetcher
	rt   *actors.Runtime
	log  *syncBuf
	reg  *prometheus.Registry // the fetcher's metrics
	once sync.Once
}

// stop stops the runtime once: a second Runtime.Stop would wait its whole
// timeout for a stage that already stopped.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		if err := r.rt.Stop(20 * time.Second); err != nil {
			t.Error(err)
		}
	})
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func start(t *testing.T, q *queue.Queue, cfg *Config, node string) *running {
	t.Helper()
	buf := &syncBuf{}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	f, err := New(cfg, Deps{Queue: q, Logger: log, Metrics: reg, NodeName: node})
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := actors.NewRuntime(log, prometheus.NewRegistry())
	rt.Add(actors.StageFetch, "sls/"+cfg.Name, f)
	rt.Start(context.Background())
	r := &running{f: f, rt: rt, log: buf, reg: reg}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// rawRecords reads all of RAW with a fresh consumer: records by "seq" field.
func rawRecords(t *testing.T, q *queue.Queue) (map[string]int, []map[string]string, []*queue.Delivery) {
	t.Helper()
	return readRaw(t, q, "raw.>")
}

// readRaw reads every RAW message on subject with a fresh consumer: its
// records counted by "seq" field, the records, the messages.
func readRaw(t *testing.T, q *queue.Queue, subject string) (map[string]int, []map[string]string, []*queue.Delivery) {
	t.Helper()
	name := fmt.Sprint("check-", time.Now().UnixNano())
	c, err := q.Consumer(context.Background(), queue.ConsumerConfig{Stream: queue.StreamRaw, Durable: name, Subject: subject, MaxAckPending: 10000})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Close()
		// A durable that never acks would hold every record from trimming.
		_ = q.JetStream().DeleteConsumer(context.Background(), queue.StreamRaw, name)
	}()
	seqs := map[string]int{}
	var recs []map[string]string
	var ds []*queue.Delivery
	for {
		d, err := c.Next(context.Background(), 300*time.Millisecond)
		if err != nil {
			return seqs, recs, ds
		}
		ds = append(ds, d)
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
			recs = append(recs, m)
		}
	}
}

func rawCount(t *testing.T, q *queue.Queue) int {
	s, err := q.JetStream().Stream(context.Background(), queue.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(context.Background())
	return int(info.State.Msgs)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkpointedGroups(s *slstest.Server, shards int) int {
	n := 0
	for i := 0; i < shards; i++ {
		if p := s.CheckpointPosition("sluice", i); p > 0 {
			n += int(p)
		}
	}
	return n
}

func TestProducerRecordsArriveInRAWIntact(t *testing.T) {
	s := newStandIn(t, 2)
	q := newQueue(t, t.TempDir(), 128<<20)
	httpc, _ := httpClient(s.Endpoint, 10*time.Second, nil, nil)
	pc := producer.GetDefaultProducerConfig()
	pc.Endpoint, pc.AccessKeyID, pc.AccessKeySecret, pc.HTTPClient = s.Endpoint, akID, akSecret, httpc
	pc.LingerMs = 50
	pc.DisableRuntimeMetrics = true // its monitor races with SafeClose in v0.1.131
	p, err := producer.NewProducer(pc)
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	for i := 0; i < 300; i++ {
		l := producer.GenerateLog(uint32(1732480000+i), map[string]string{"seq": strconv.Itoa(i), "msg": "line \"quoted\"\n\ttab ünïcode", "user": "alice"})
		if err := p.SendLog("proj", "audit", "audit_log", "10.1.2.3", l); err != nil {
			t.Fatal(err)
		}
	}
	p.SafeClose()
	if s.Logs() != 300 {
		t.Fatalf("stand-in holds %d logs after the producer closed", s.Logs())
	}
	start(t, q, testConfig(s, nil), "n1")
	waitFor(t, 15*time.Second, "all 300 records in RAW", func() bool { seqs, _, _ := rawRecords(t, q); return len(seqs) == 300 })
	seqs, recs, ds := rawRecords(t, q)
	for i := 0; i < 300; i++ {
		if seqs[strconv.Itoa(i)] != 1 {
			t.Fatalf("seq %d in RAW %d times", i, seqs[strconv.Itoa(i)])
		}
	}
	r := recs[0]
	if r["msg"] != "line \"quoted\"\n\ttab ünïcode" || r["user"] != "alice" || r["__topic__"] != "audit_log" || r["__source__"] != "10.1.2.3" || r["__time__"] == "" {
		t.Fatalf("record fields: %v", r)
	}
	d := ds[0]
	var ev map[string]any
	if err := json.Unmarshal([]byte(d.Meta().Event), &ev); err != nil || ev["project"] != "proj" || ev["logstore"] != "audit" || ev["topic"] != "audit_log" {
		t.Fatalf("event header %q: %v", d.Meta().Event, err)
	}
	if !strings.HasPrefix(d.ID, "sls/audit/proj/audit/") || d.Meta().Kind != "sls" || d.Meta().Source != "audit" {
		t.Fatalf("batch headers: id %s %+v", d.ID, d.Meta())
	}
	waitFor(t, 10*time.Second, "checkpoints cover every log group", func() bool {
		return checkpointedGroups(s, 2) == s.LogGroups(0)+s.LogGroups(1)
	})
}

// The SDK never closes a checkpoint answer's body; without the transport's
// help every checkpoint would hold a connection open for good.
func TestCheckpointsDoNotLeakConnections(t *testing.T) {
	s := newStandIn(t, 4)
	q := newQueue(t, t.TempDir(), 128<<20)
	start(t, q, testConfig(s, nil), "n1")
	for i := 0; i < 40; i++ { // new data on every shard, so every interval checkpoints
		for sh := 0; sh < 4; sh++ {
			s.Put(sh, slstest.AuditLogGroups(uint64(i), 1, time.Now())[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "every log group checkpointed", func() bool { return checkpointedGroups(s, 4) == 160 })
	if n := s.OpenConns(); n > 20 {
		t.Fatalf("%d connections open to SLS after about 100 checkpoints", n)
	}
	// Nor a request-timeout goroutine per unclosed body.
	var stacks bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&stacks, 2) // one stack per goroutine
	if n := strings.Count(stacks.String(), "net/http.setRequestCancel"); n > 10 {
		t.Fatalf("%d goroutines wait in net/http.setRequestCancel", n)
	}
}

func TestTwoFetchersSplitShardsAndTakeOver(t *testing.T) {
	s := newStandIn(t, 4)
	s.Preload(1, 4*slstest.GroupSize*4, time.Now().Add(-time.Hour))
	q := newQueue(t, t.TempDir(), 256<<20)
	a := start(t, q, testConfig(s, nil), "a")
	b := start(t, q, testConfig(s, nil), "b")
	waitFor(t, 20*time.Second, "both consumers hold two shards", func() bool {
		owners := s.Owners("sluice")
		count := map[string]int{}
		for _, o := range owners {
			count[o]++
		}
		return len(owners) == 4 && count[a.f.ConsumerName()] == 2 && count[b.f.ConsumerName()] == 2
	})
	waitFor(t, 20*time.Second, "first records pulled", func() bool { return rawCount(t, q) > 0 })
	// a stops heart-beating; b must take its shards and go on from the checkpoints.
	a.stop(t)
	for i := 0; i < 4; i++ {
		s.PutAt(i, slstest.AuditLogGroups(uint64(100+i), 10, time.Now())[0], time.Now())
	}
	waitFor(t, 30*time.Second, "b holds all four shards", func() bool {
		owners := s.Owners("sluice")
		for i := 0; i < 4; i++ {
			if owners[i] != b.f.ConsumerName() {
				return false
			}
		}
		return true
	})
	total := s.Logs()
	waitFor(t, 30*time.Second, "every record in RAW", func() bool { _, recs, _ := rawRecords(t, q); return len(recs) >= total })
	_, recs, _ := rawRecords(t, q)
	if len(recs) != total {
		t.Fatalf("RAW holds %d records, the stand-in %d: some twice", len(recs), total)
	}
}

// startUntilRAWIsFull starts a fetcher on s with a 16 MiB buffer (RAW
// gets 30 %) and returns once RAW is full and the source says so.
func startUntilRAWIsFull(t *testing.T, s *slstest.Server, dupWindow time.Duration) (*queue.Queue, *running) {
	t.Helper()
	q, err := queue.Start(context.Background(), queue.Options{DataDir: t.TempDir(), MaxBytes: 16 << 20, DuplicateWindow: dupWindow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	r := start(t, q, testConfig(s, nil), "n1")
	waitFor(t, 30*time.Second, "RAW to fill and the source to say so", func() bool {
		err := r.rt.Ready()
		return err != nil && strings.Contains(err.Error(), "RAW is full")
	})
	return q, r
}

func TestFullRAWStopsPullingAndHoldsCheckpoints(t *testing.T) {
	s := newStandIn(t, 2)
	s.Preload(2, 12000, time.Now().Add(-time.Hour)) // ~12 MB; RAW gets 30% of 16 MiB
	// Delivered records go when short of space only once older than the
	// duplicate window: a short one lets the drain below free RAW.
	q, r := startUntilRAWIsFull(t, s, 100*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // let any checkpoint flush happen
	_, _, ds := rawRecords(t, q)
	inRAW := map[string]bool{}
	for _, d := range ds {
		inRAW[d.ID] = true
	}
	// Every log group a checkpoint covers is in RAW.
	for shard := 0; shard < 2; shard++ {
		pos := s.CheckpointPosition("sluice", shard)
		for g := int64(0); g < pos; g++ {
			found := false
			for id := range inRAW {
				if strings.HasPrefix(id, fmt.Sprintf("sls/audit/proj/audit/%d/", shard)) {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("shard %d checkpoint at %d but nothing of it in RAW", shard, pos)
			}
		}
	}
	if checkpointedGroups(s, 2) >= s.LogGroups(0)+s.LogGroups(1) {
		t.Fatal("checkpoints moved to the end although RAW is full")
	}
	// Drain RAW: the source resumes and, in the end, every record is stored once.
	seen := map[string]int{}
	c, err := q.Consumer(context.Background(), queue.ConsumerConfig{Stream: queue.StreamRaw, Durable: "transform", Subject: "raw.>", MaxAckPending: 1000})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < 12000 && time.Now().Before(deadline) {
		d, err := c.Next(context.Background(), 200*time.Millisecond)
		if err != nil {
			_ = q.Trim(context.Background())
			continue
		}
		rs, _ := batch.Decode(d.Data)
		for _, rec := range rs {
			var m map[string]string
			_ = json.Unmarshal(rec, &m)
			seen[m["seq"]]++
		}
		_ = d.Ack()
	}
	if len(seen) != 12000 {
		t.Fatalf("after draining, %d of 12000 records seen; ready: %v\nlog tail: %s", len(seen), r.rt.Ready(), tail(r.log.String(), 3000))
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("seq %s stored %d times", seq, n)
		}
	}
}

func TestStartPositions(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		start string
		want  int // records expected in RAW
	}{{"begin", 2 * slstest.GroupSize}, {"end", 0}, {now.Add(-30 * time.Minute).Format(time.RFC3339), slstest.GroupSize}} {
		t.Run(tc.start, func(t *testing.T) {
			s := newStandIn(t, 1)
			old := slstest.AuditLogGroups(3, slstest.GroupSize, now.Add(-time.Hour))[0]
			recent := slstest.AuditLogGroups(4, slstest.GroupSize, now.Add(-10*time.Minute))[0]
			s.PutAt(0, old, now.Add(-time.Hour))
			s.PutAt(0, recent, now.Add(-10*time.Minute))
			q := newQueue(t, t.TempDir(), 64<<20)
			start(t, q, testConfig(s, func(c *Config) { c.Start = tc.start }), "n1")
			waitFor(t, 15*time.Second, "a checkpoint", func() bool { return s.Checkpoint("sluice", 0) != "" })
			_, recs, _ := rawRecords(t, q)
			if len(recs) != tc.want {
				t.Fatalf("RAW holds %d records, want %d", len(recs), tc.want)
			}
		})
	}
}

func TestClearErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		prep func(*slstest.Server)
		want string
	}{
		{"wrong key", func(c *Config) { c.AccessKeySecret = "not-the-secret-xyz" }, nil, "SignatureNotMatch"},
		{"unknown logstore", func(c *Config) { c.Logstore = "nope" }, nil, "LogStoreNotExist"},
		{"unknown project", func(c *Config) { c.Project = "other" }, nil, "ProjectNotExist"},
		{"group quota", nil, func(s *slstest.Server) { fillGroups(t, s) }, "ExceedQuota"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStandIn(t, 1)
			if tc.prep != nil {
				tc.prep(s)
			}
			q := newQueue(t, t.TempDir(), 64<<20)
			r := start(t, q, testConfig(s, tc.mod), "n1")
			waitFor(t, 10*time.Second, "readiness to name "+tc.want, func() bool {
				err := r.rt.Ready()
				return err != nil && strings.Contains(err.Error(), tc.want)
			})
			for _, secret := range []string{akSecret, "not-the-secret-xyz"} {
				if strings.Contains(r.log.String(), secret) || strings.Contains(r.rt.Ready().Error(), secret) {
					t.Fatal("a secret key appears in the logs or readiness")
				}
			}
		})
	}
}

func fillGroups(t *testing.T, s *slstest.Server) {
	httpc, _ := httpClient(s.Endpoint, 5*time.Second, nil, nil)
	c := sdk.CreateNormalInterface(s.Endpoint, akID, akSecret, "")
	c.SetHTTPClient(httpc)
	for i := 0; i < 10; i++ {
		if err := c.CreateConsumerGroup("proj", "audit", sdk.ConsumerGroup{ConsumerGroupName: fmt.Sprint("other-", i), Timeout: 60}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSIGKILLBetweenPublishAndCheckpoint: a node killed after publishing but
// before its checkpoint was saved re-pulls after restart; RAW holds every
// record once.
func TestSIGKILLBetweenPublishAndCheckpoint(t *testing.T) {
	if env := os.Getenv("SLUICE_SLS_CHILD"); env != "" {
		childFetch(env)
		return
	}
	s := newStandIn(t, 2)
	s.Preload(5, 4000, time.Now().Add(-time.Hour))
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLBetweenPublishAndCheckpoint$")
	cmd.Env = append(os.Environ(), "SLUICE_SLS_CHILD="+dir+"|"+s.Endpoint)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "PUBLISHED" {
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if checkpointedGroups(s, 2) != 0 {
		t.Fatal("the child saved checkpoints; it was to be killed before")
	}
	q := newQueue(t, dir, 128<<20)
	before := rawCount(t, q)
	if before == 0 {
		t.Fatal("the child published nothing before it was killed")
	}
	// The dead consumer still holds the shards until its heartbeat times out.
	start(t, q, testConfig(s, nil), "restarted")
	waitFor(t, 40*time.Second, "all records in RAW", func() bool { _, recs, _ := rawRecords(t, q); return len(recs) >= 4000 })
	seqs, recs, _ := rawRecords(t, q)
	if len(recs) != 4000 || len(seqs) != 4000 {
		t.Fatalf("RAW holds %d records (%d distinct) for 4000 produced", len(recs), len(seqs))
	}
}

func childFetch(env string) {
	dir, endpoint, _ := strings.Cut(env, "|")
	q, err := queue.Start(context.Background(), queue.Options{DataDir: dir, MaxBytes: 128 << 20})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	cfg := &Config{Name: "audit", Type: "sls", Endpoint: endpoint, Project: "proj", Logstore: "audit", ConsumerGroup: "sluice",
		AccessKeyID: akID, AccessKeySecret: akSecret, HeartbeatInterval: conf.Duration(time.Second),
		FetchInterval: conf.Duration(20 * time.Millisecond), CheckpointInterval: conf.Duration(time.Hour)}
	f, err := New(cfg, Deps{Queue: q, NodeName: "child"})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	go f.Run(context.Background(), &actors.Health{})
	for {
		s, _ := q.JetStream().Stream(context.Background(), queue.StreamRaw)
		if info, err := s.Info(context.Background()); err == nil && info.State.Msgs > 20 {
			fmt.Println("PUBLISHED")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
