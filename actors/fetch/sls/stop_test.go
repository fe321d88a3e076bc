package sls

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/internal/conf"
)

// blackHole is a TCP proxy to an SLS stand-in that, once cut, answers
// nothing: connections stay open and silent, new ones are accepted and
// held — what a dropped route or a firewall looks like to the SDK.
type blackHole struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cutOff bool
	conns  []net.Conn // client side, held until Close
	ups    []net.Conn // stand-in side, closed by cut
}

func newBlackHole(t *testing.T, s *slstest.Server, cut bool) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := s.Endpoint[len("http://"):]
	b := &blackHole{ln: ln, target: host, cutOff: cut}
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *blackHole) URL() string { return "http://" + b.ln.Addr().String() }

func (b *blackHole) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns = append(b.conns, c)
		cut := b.cutOff
		b.mu.Unlock()
		if cut {
			continue // held open, never answered
		}
		u, err := net.Dial("tcp", b.target)
		if err != nil {
			continue
		}
		b.mu.Lock()
		b.ups = append(b.ups, u)
		b.mu.Unlock()
		go func() { _, _ = io.Copy(u, c) }()
		go func() { _, _ = io.Copy(c, u) }() // when u is cut, c stays open and silent
	}
}

// cut stops every answer from now on.
func (b *blackHole) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cutOff = true
	for _, u := range b.ups {
		_ = u.Close()
	}
}

func (b *blackHole) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range append(b.conns, b.ups...) {
		_ = c.Close()
	}
}

// stopWithin stops r's runtime, which gives the stage 15 s, and fails
// unless the fetcher stopped cleanly within want.
func stopWithin(t *testing.T, r *running, want time.Duration) {
	t.Helper()
	var err error
	began := time.Now()
	r.once.Do(func() { err = r.rt.Stop(15 * time.Second) })
	took := time.Since(began)
	if err != nil || took > want {
		t.Fatalf("stop took %s (want under %s): %v\n%s", took.Round(time.Millisecond), want, err, tail(r.log.String(), 3000))
	}
	t.Logf("stopped in %s", took.Round(time.Millisecond))
}

// SIGTERM while SLS does not answer (issue 35, case 6): the library
// retries its last checkpoint flush and pulls against a silent endpoint;
// the node must stop within a few seconds all the same, not after the
// heartbeat timeout (3 × 5 s).
func TestStopIsPromptWhenSLSStopsAnswering(t *testing.T) {
	s := newStandIn(t, 2)
	s.Preload(1, 8*slstest.GroupSize, time.Now().Add(-time.Hour))
	hole := newBlackHole(t, s, false)
	q := newQueue(t, t.TempDir(), 128<<20)
	r := start(t, q, testConfig(s, func(c *Config) {
		c.Endpoint = hole.URL()
		c.HeartbeatInterval = conf.Duration(5 * time.Second) // the default
		c.CheckpointInterval = conf.Duration(time.Hour)      // acked, not saved: the stop's flush has work
	}), "n1")
	waitFor(t, 20*time.Second, "every log group in RAW", func() bool { return rawCount(t, q) == 8 })
	time.Sleep(300 * time.Millisecond) // the last Process marks its checkpoint after the ack
	hole.cut()
	time.Sleep(time.Second)
	stopWithin(t, r, 10*time.Second)
	if !strings.Contains(r.log.String(), "were not saved") {
		t.Errorf("the log does not say the checkpoints were not saved:\n%s", tail(r.log.String(), 3000))
	}
}

// SIGTERM while the fetcher is still trying to reach SLS for the first
// time (its consumer-group check retries for minutes).
func TestStopIsPromptWhenSLSNeverAnswered(t *testing.T) {
	s := newStandIn(t, 2)
	hole := newBlackHole(t, s, true)
	q := newQueue(t, t.TempDir(), 128<<20)
	r := start(t, q, testConfig(s, func(c *Config) { c.Endpoint = hole.URL() }), "n1")
	time.Sleep(time.Second)
	stopWithin(t, r, 8*time.Second)
}

// When SLS answers, the stop still saves every acked checkpoint: with
// checkpoint_interval far away, only the stop's flush saves them.
func TestStopSavesAckedCheckpointsWhenSLSAnswers(t *testing.T) {
	s := newStandIn(t, 2)
	s.Preload(1, 8*slstest.GroupSize, time.Now().Add(-time.Hour))
	q := newQueue(t, t.TempDir(), 128<<20)
	r := start(t, q, testConfig(s, func(c *Config) {
		c.HeartbeatInterval = conf.Duration(5 * time.Second)
		c.CheckpointInterval = conf.Duration(time.Hour)
	}), "n1")
	waitFor(t, 20*time.Second, "every log group in RAW", func() bool { return rawCount(t, q) == 8 })
	time.Sleep(300 * time.Millisecond) // the last Process marks its checkpoint after the ack
	stopWithin(t, r, 8*time.Second)
	if n := checkpointedGroups(s, 2); n != 8 {
		t.Fatalf("after the stop SLS has checkpoints past %d log groups, want all 8 (acked)", n)
	}
}
