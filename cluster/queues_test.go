package cluster_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// startCluster starts n embedded queues as the nodes of one cluster,
// routed to each other, with R3 streams.
func startCluster(t *testing.T, n int) []*cluster.Cluster {
	t.Helper()
	return startClusterWith(t, n, nil)
}

func startClusterWith(t *testing.T, n int, tls func(i int) *cluster.TLS) []*cluster.Cluster {
	t.Helper()
	return startClusterOpts(t, n, tls, nil)
}

// nodeOptions are what a test node starts from.
type nodeOptions struct {
	queue   queue.Options
	cluster cluster.Options
}

// startClusterOpts is startClusterWith with mod applied to every node's options.
func startClusterOpts(t *testing.T, n int, tls func(i int) *cluster.TLS, mod func(*nodeOptions)) []*cluster.Cluster {
	t.Helper()
	peers := make([]string, n)
	for i := range peers {
		peers[i] = freeTCPAddr(t)
	}
	cs := make([]*cluster.Cluster, n)
	errs := make(chan error, n)
	for i := range cs {
		go func(i int) {
			o := nodeOptions{
				queue:   queue.Options{DataDir: t.TempDir(), ServerName: fmt.Sprintf("node-%d", i+1), MaxBytes: 64 << 20, Replicas: 3},
				cluster: cluster.Options{Name: "test", Listen: peers[i], Peers: peers},
			}
			if tls != nil {
				o.cluster.TLS = tls(i)
			}
			if mod != nil {
				mod(&o)
			}
			c, err := o.start()
			cs[i] = c
			errs <- err
		}(i)
	}
	for range cs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	})
	return cs
}

func (o nodeOptions) start() (*cluster.Cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return cluster.Start(ctx, o.queue, o.cluster)
}

// rawMsg is a batch of records from source, as a source publishes it.
func rawMsg(source, id string, records ...string) *nats.Msg {
	recs := make([][]byte, len(records))
	for i, r := range records {
		recs[i] = []byte(r)
	}
	h := nats.Header{}
	h.Set(batch.HeaderMsgID, id)
	h.Set(batch.HeaderCount, fmt.Sprint(len(recs)))
	return &nats.Msg{Subject: queue.RawSubject(source), Header: h, Data: batch.Encode(recs)}
}

func streamMsgs(t *testing.T, q *queue.Queue, name string) uint64 {
	t.Helper()
	info, err := q.StreamInfo(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The trimmer runs on every node at once; in a cluster the consumer list
// comes from the meta leader, the replay-window lookup from the stream
// leader and the trim marks are an R3 bucket. Checked here, on the records
// this test delivers, to save starting another cluster.
func TestClusterReplicatesAndSharesConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	reg := prometheus.NewRegistry() // node-1's
	qs := queues(startClusterOpts(t, 3, nil, func(o *nodeOptions) {
		o.queue.RetainDelivered = time.Nanosecond
		o.queue.DuplicateWindow = 100 * time.Millisecond
		if o.queue.ServerName == "node-1" {
			o.queue.Metrics = reg
		}
	}))
	ctx := context.Background()
	checkClusterMetrics(t, reg)
	for i := 0; i < 20; i++ {
		q := qs[i%3] // publish through every node
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("id-", i), "r")}); err != nil {
			t.Fatal(err)
		}
	}
	// Each node binds the same durable; together they see every message once.
	seen := map[string]int{}
	cs := make([]*queue.Consumer, 3)
	for i, q := range qs {
		c, err := q.Consumer(ctx, queue.ConsumerConfig{Stream: queue.StreamRaw, Durable: "transform", Subject: "raw.>", MaxAckPending: 5})
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < 20 && time.Now().Before(deadline) {
		for _, c := range cs {
			d, err := c.Next(ctx, 100*time.Millisecond)
			if err != nil {
				continue
			}
			seen[d.ID]++
			_ = d.Ack()
		}
	}
	if len(seen) != 20 {
		t.Fatalf("saw %d of 20 messages", len(seen))
	}
	info, err := qs[0].JetStream().Stream(ctx, queue.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("RAW has %d replicas", r)
	}

	waitFor(t, func() bool {
		info, err := cs[0].Info(ctx)
		return err == nil && info.AckFloor == 20
	})
	// An operator's durable without a filter that acked only 2 holds the rest.
	op, err := qs[0].JetStream().CreateOrUpdateConsumer(ctx, queue.StreamRaw, jetstream.ConsumerConfig{Durable: "debug", AckPolicy: jetstream.AckAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	b, err := op.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var last jetstream.Msg
	for m := range b.Messages() {
		last = m
	}
	if last == nil {
		t.Fatalf("the operator's durable got nothing: %v", b.Error())
	}
	if err := last.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		// The first trim creates the R3 marks bucket: until its replicas
		// elect a leader, writing a mark finds no responders, and then
		// nothing is purged; the trimmer's next round would try again.
		deadline := time.Now().Add(10 * time.Second)
		for err := q.Trim(ctx); err != nil; err = q.Trim(ctx) {
			if time.Now().After(deadline) {
				t.Fatalf("trim on %s: %v", q.Options().ServerName, err)
			}
			t.Logf("trim on %s: %v; again", q.Options().ServerName, err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	if n := streamMsgs(t, qs[2], queue.StreamRaw); n != 18 {
		t.Fatalf("RAW holds %d after trims, want 18: the 2 every durable acked go, the operator's durable holds the rest", n)
	}
	if err := qs[0].JetStream().DeleteConsumer(ctx, queue.StreamRaw, "debug"); err != nil {
		t.Fatal(err)
	}
	if err := qs[1].Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, qs[0], queue.StreamRaw); n != 0 {
		t.Fatalf("RAW holds %d after every durable acked everything, want 0", n)
	}
	if m, err := qs[2].TrimmedBefore(ctx, queue.StreamRaw, queue.RawSubject("a")); err != nil || m.IsZero() {
		t.Fatalf("trim mark %v, %v: want one", m, err)
	}
}

// checkClusterMetrics: a node's metrics show its peers, the meta leader,
// each stream's leader and that it is not paused.
func checkClusterMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	const want = `
# HELP sluice_cluster_has_meta_leader 1 while this node sees a JetStream meta leader (a quorum).
# TYPE sluice_cluster_has_meta_leader gauge
sluice_cluster_has_meta_leader 1
# HELP sluice_cluster_paused 1 while this node takes no work because it lost contact with a quorum of the JetStream cluster.
# TYPE sluice_cluster_paused gauge
sluice_cluster_paused 0
# HELP sluice_cluster_peer_up 1 while a route to the peer node is up.
# TYPE sluice_cluster_peer_up gauge
sluice_cluster_peer_up{peer="node-2"} 1
sluice_cluster_peer_up{peer="node-3"} 1
`
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_cluster_has_meta_leader", "sluice_cluster_paused", "sluice_cluster_peer_up"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("node-1's cluster metrics: %v", err)
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_stream_leader"); err != nil || n != 3 {
		t.Fatalf("node-1 shows %d stream leaders (%v), want one for each of RAW, OUT and DLQ", n, err)
	}
}

// queues are the clusters' queues.
func queues(cs []*cluster.Cluster) []*queue.Queue {
	qs := make([]*queue.Queue, len(cs))
	for i, c := range cs {
		qs[i] = c.Queue()
	}
	return qs
}

func nodeTLS(dir, name string) *cluster.TLS {
	return &cluster.TLS{CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem"), CAFile: filepath.Join(dir, "ca.pem")}
}

// Routes use mutual TLS: three nodes with the cluster CA's certificates
// form the cluster; a fourth whose certificate another CA signed cannot join.
func TestClusterRefusesANodeFromAnotherCA(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	good, other := t.TempDir(), t.TempDir()
	if err := cluster.GenerateCerts(cluster.CertOptions{Dir: good, Nodes: []string{"node-1", "node-2", "node-3", "node-4"}}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.GenerateCerts(cluster.CertOptions{Dir: other, Nodes: []string{"node-4"}}); err != nil {
		t.Fatal(err)
	}
	var peers []string
	cs := startClusterWith(t, 3, func(i int) *cluster.TLS { return nodeTLS(good, fmt.Sprintf("node-%d", i+1)) })
	for _, c := range cs {
		peers = append(peers, c.Queue().Server().ClusterAddr().String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	intruder := freeTCPAddr(t)
	c, err := cluster.Start(ctx, queue.Options{DataDir: t.TempDir(), ServerName: "node-4", MaxBytes: 64 << 20, Replicas: 3},
		cluster.Options{Name: "test", Listen: intruder, Peers: append(peers, intruder), TLS: nodeTLS(other, "node-4")})
	if err == nil {
		c.Close()
		t.Fatal("a node with a certificate from another CA started as part of the cluster")
	}
	var peerView []string // only the meta leader answers
	for _, c := range cs {
		peerView = append(peerView, c.Queue().Server().JetStreamClusterPeers()...)
	}
	slices.Sort(peerView)
	if fmt.Sprint(peerView) != "[node-1 node-2 node-3]" {
		t.Fatalf("the meta leader sees peers %v, want the three with the cluster's certificates", peerView)
	}
	// The three still work.
	if err := cs[1].Queue().PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "after-intruder", "r")}); err != nil {
		t.Fatal(err)
	}
}

// A real cluster: the node left alone when its two peers stop pauses
// within the grace, and resumes when one of them is back.
func TestClusterNodeWithoutQuorumPausesAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const pauseAfter = 3 * time.Second
	var mu sync.Mutex
	saved := map[string]nodeOptions{}
	cs := startClusterOpts(t, 3, nil, func(o *nodeOptions) {
		o.cluster.PauseAfter = pauseAfter
		mu.Lock()
		saved[o.queue.ServerName] = *o
		mu.Unlock()
	})
	w := cs[0].Quorum()
	if w == nil {
		t.Fatal("a cluster node has no quorum watch")
	}
	ctx, release := w.Open(context.Background())
	defer release()
	time.Sleep(2 * time.Second)
	if ctx.Err() != nil {
		t.Fatalf("paused with every peer up: %+v", w.State())
	}
	cs[1].Close()
	cs[2].Close()
	cs[1], cs[2] = nil, nil
	lost := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(pauseAfter + 5*time.Second):
		t.Fatalf("node-1 not paused %s after both peers stopped: %+v", time.Since(lost), w.State())
	}
	took := time.Since(lost)
	if st := cs[0].State(context.Background()); st.Quorum == nil || !st.Quorum.Paused {
		t.Error("cluster state does not say the node is paused")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	back := time.Now()
	c2, err := saved["node-2"].start()
	if err != nil {
		t.Fatal(err)
	}
	cs[1] = c2
	opened := make(chan struct{})
	go func() {
		c, r := w.Open(sctx)
		defer r()
		if c.Err() == nil {
			close(opened)
		}
	}()
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatalf("node-1 not resumed 30s after node-2 restarted: %+v", w.State())
	}
	t.Logf("node-1 paused %s after its peers stopped (pause after %s); resumed %s after node-2 was back", took.Round(time.Millisecond), pauseAfter, time.Since(back).Round(time.Millisecond))
}

// An ack on a node cut off from the quorum is not replicated: a plain Ack
// says nothing of it, AckSync fails, so a sink can stop sending before it
// sends what the majority will send again.
func TestClusterAckSyncFailsWithoutQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	cs := startCluster(t, 3)
	qs := queues(cs)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := qs[0].PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("ack-", i), "r")}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := qs[0].Consumer(ctx, queue.ConsumerConfig{Stream: queue.StreamRaw, Durable: "transform", Subject: "raw.>", AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var ds []*queue.Delivery
	// A new consumer's leader is elected a moment after it is made; until
	// then a pull may find no responders (seen once in CI).
	for deadline := time.Now().Add(30 * time.Second); len(ds) < 3; {
		d, err := c.Next(ctx, 5*time.Second)
		if err != nil {
			if time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if err := ds[0].AckSync(ctx); err != nil {
		t.Fatalf("AckSync with every node up: %v", err)
	}
	cs[1].Close()
	cs[2].Close()
	cs[1], cs[2] = nil, nil
	if err := ds[1].Ack(); err != nil {
		t.Fatalf("plain Ack without quorum: %v (it was expected to say nothing)", err)
	}
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := ds[2].AckSync(actx); err == nil {
		t.Fatal("AckSync succeeded on a node without quorum")
	} else {
		t.Logf("AckSync without quorum: %v", err)
	}
}
