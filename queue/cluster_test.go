package queue

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/cluster"
)

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	return ports
}

// startCluster starts n embedded servers routed to each other, with R3 streams.
func startCluster(t *testing.T, n int) []*Queue {
	t.Helper()
	return startClusterWith(t, n, nil)
}

func startClusterWith(t *testing.T, n int, tls func(i int) *ClusterTLS) []*Queue {
	t.Helper()
	return startClusterOpts(t, n, tls, nil)
}

// startClusterOpts is startClusterWith with mod applied to every node's options.
func startClusterOpts(t *testing.T, n int, tls func(i int) *ClusterTLS, mod func(*Options)) []*Queue {
	t.Helper()
	ports := freePorts(t, n)
	peers := make([]string, n)
	for i, p := range ports {
		peers[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	qs := make([]*Queue, n)
	errs := make(chan error, n)
	for i := range qs {
		go func(i int) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			opts := Options{
				DataDir: t.TempDir(), ServerName: fmt.Sprintf("node-%d", i+1), MaxBytes: 64 << 20, Replicas: 3,
				Cluster: &ClusterOptions{Name: "test", Listen: peers[i], Peers: peers},
			}.withTLS(tls, i)
			if mod != nil {
				mod(&opts)
			}
			q, err := Start(ctx, opts)
			qs[i] = q
			errs <- err
		}(i)
	}
	for range qs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, q := range qs {
			if q != nil {
				q.Close()
			}
		}
	})
	return qs
}

// The trimmer runs on every node at once; in a cluster the consumer list
// comes from the meta leader, the replay-window lookup from the stream
// leader and the trim marks are an R3 bucket. Checked here, on the records
// this test delivers, to save starting another cluster.
func TestClusterReplicatesAndSharesConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	qs := startClusterOpts(t, 3, nil, func(o *Options) { o.RetainDelivered = time.Nanosecond; o.DuplicateWindow = 100 * time.Millisecond })
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		q := qs[i%3] // publish through every node
		if err := q.PublishMessages(ctx, []*nats.Msg{rawMsg("a", fmt.Sprint("id-", i), "r")}); err != nil {
			t.Fatal(err)
		}
	}
	// Each node binds the same durable; together they see every message once.
	seen := map[string]int{}
	cs := make([]*Consumer, 3)
	for i, q := range qs {
		c, err := q.Consumer(ctx, ConsumerConfig{Stream: StreamRaw, Durable: "transform", Subject: "raw.>", MaxAckPending: 5})
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
	info, err := qs[0].js.Stream(ctx, StreamRaw)
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
	op, err := qs[0].js.CreateOrUpdateConsumer(ctx, StreamRaw, jetstream.ConsumerConfig{Durable: "debug", AckPolicy: jetstream.AckAllPolicy})
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
				t.Fatalf("trim on %s: %v", q.opts.ServerName, err)
			}
			t.Logf("trim on %s: %v; again", q.opts.ServerName, err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	if n := streamMsgs(t, qs[2], StreamRaw); n != 18 {
		t.Fatalf("RAW holds %d after trims, want 18: the 2 every durable acked go, the operator's durable holds the rest", n)
	}
	if err := qs[0].js.DeleteConsumer(ctx, StreamRaw, "debug"); err != nil {
		t.Fatal(err)
	}
	if err := qs[1].Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, qs[0], StreamRaw); n != 0 {
		t.Fatalf("RAW holds %d after every durable acked everything, want 0", n)
	}
	if m, err := qs[2].TrimmedBefore(ctx, StreamRaw, RawSubject("a")); err != nil || m.IsZero() {
		t.Fatalf("trim mark %v, %v: want one", m, err)
	}
}

func (o Options) withTLS(tls func(i int) *ClusterTLS, i int) Options {
	if tls != nil {
		o.Cluster.TLS = tls(i)
	}
	return o
}

func nodeTLS(dir, name string) *ClusterTLS {
	return &ClusterTLS{CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem"), CAFile: filepath.Join(dir, "ca.pem")}
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
	qs := startClusterWith(t, 3, func(i int) *ClusterTLS { return nodeTLS(good, fmt.Sprintf("node-%d", i+1)) })
	var peers []string
	for _, q := range qs {
		peers = append(peers, q.opts.Cluster.Listen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	intruder := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	q, err := Start(ctx, Options{
		DataDir: t.TempDir(), ServerName: "node-4", MaxBytes: 64 << 20, Replicas: 3,
		Cluster: &ClusterOptions{Name: "test", Listen: intruder, Peers: append(peers, intruder), TLS: nodeTLS(other, "node-4")},
	})
	if err == nil {
		q.Close()
		t.Fatal("a node with a certificate from another CA started as part of the cluster")
	}
	var peerView []string // only the meta leader answers
	for _, q := range qs {
		peerView = append(peerView, q.srv.JetStreamClusterPeers()...)
	}
	slices.Sort(peerView)
	if fmt.Sprint(peerView) != "[node-1 node-2 node-3]" {
		t.Fatalf("the meta leader sees peers %v, want the three with the cluster's certificates", peerView)
	}
	// The three still work.
	if err := qs[1].PublishMessages(context.Background(), []*nats.Msg{rawMsg("a", "after-intruder", "r")}); err != nil {
		t.Fatal(err)
	}
}
