package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/queue"
)

// The fault kinds a chaos run injects, each healed at the end of its window.
var faultKinds = []string{
	"kill",              // SIGKILL a random node, restart it after the window
	"quorum-loss",       // three nodes: SIGKILL two at once, so the R3 streams lose their quorum; restart both after the window
	"partition",         // three nodes, as root: a node's cluster link down (it still reaches SLS and Splunk), up after the window
	"hec-down",          // Splunk refuses connections
	"hec-busy",          // Splunk answers 503 "server is busy" in bursts
	"hec-slow",          // Splunk takes seconds per request
	"hec-refuse",        // Splunk refuses single events (400): they must reach the DLQ
	"buffer-full",       // Splunk down until the backlog outgrows queue.max_bytes
	"sls-5xx",           // SLS answers pulls with 500
	"sls-slow",          // SLS takes seconds per pull
	"policy-break",      // a broken policy file in the policy directory
	"policy-slow",       // a policy rule that runs past eval_timeout on a few records in a row
	"operator-consumer", // an operator's durable consumer on OUT with no filter, acking everything, while Splunk is down and OUT fills
	"hec-html",          // a proxy answers 200 with an HTML maintenance page
	"hec-ack-off",       // the token's indexer acknowledgement is turned off while the sink has ack: true
	"hec-hang",          // Splunk holds each request past the sink's timeout and ack_wait
	"oversized",         // a record larger than a buffer message: it goes to the DLQ, the shard flows
	"second-process",    // a second sluice run on a node's data dir: it must refuse, naming the holder
	"max-bytes-lower",   // a node restarted with queue.max_bytes lowered by a quarter, then restored
	"sink-rename",       // Splunk down to build a backlog, every node restarted with the sink renamed; the operator moves the old sink's backlog
	"second-source",     // not a window: a second source on the same logstore, to a second sink, all run long
}

// setupFaults are faults that shape the whole run instead of a window.
var setupFaults = []string{"second-source"}

// fault is one scheduled injection.
type fault struct {
	Kind  string
	At    time.Duration // from the run's start
	For   time.Duration
	Node  int     // kill: which node
	Param float64 // hec-slow, sls-slow: seconds per request; hec-refuse: one seq in Param refused
}

func (f fault) end() time.Duration { return f.At + f.For }

func (f fault) String() string {
	switch f.Kind {
	case "kill":
		return fmt.Sprintf("kill node-%d, restart after %s", f.Node+1, f.For.Round(time.Second))
	case "quorum-loss":
		return fmt.Sprintf("quorum loss: node-%d alone for %s", f.Node+1, f.For.Round(time.Second))
	case "partition":
		return fmt.Sprintf("partition: node-%d cut off from its peers for %s", f.Node+1, f.For.Round(time.Second))
	case "second-process":
		return fmt.Sprintf("second sluice run on node-%d's data dir", f.Node+1)
	case "max-bytes-lower":
		return fmt.Sprintf("node-%d restarted with max_bytes -25%% for %s", f.Node+1, f.For.Round(time.Second))
	case "sink-rename":
		return fmt.Sprintf("sink renamed after Splunk down for %s", f.For.Round(time.Second))
	case "hec-slow", "sls-slow":
		return fmt.Sprintf("%s (%.1fs per request) for %s", f.Kind, f.Param, f.For.Round(time.Second))
	case "hec-refuse":
		return fmt.Sprintf("hec-refuse (one event in %.0f) for %s", f.Param, f.For.Round(time.Second))
	}
	return fmt.Sprintf("%s for %s", f.Kind, f.For.Round(time.Second))
}

// parseFaults reads --faults: "all", "none" or a comma-separated list.
func parseFaults(s string) ([]string, error) {
	switch s {
	case "all", "":
		return faultKinds, nil
	case "none":
		return nil, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(faultKinds, k) {
			return nil, fmt.Errorf("--faults: unknown fault %q (known: %s, or all, none)", k, strings.Join(faultKinds, ", "))
		}
		out = append(out, k)
	}
	return out, nil
}

// schedule draws the faults from the seed: every kind once in a shuffled
// order, then random kinds while time is left, one at a time with quiet gaps
// between them, inside [warmup, duration-cooldown]. The same seed and flags
// give the same schedule, so a failing run can be repeated exactly.
func schedule(seed uint64, kinds []string, nodes int, duration, fillTime time.Duration) []fault {
	if len(kinds) == 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	edge := max(duration/10, 10*time.Second)
	start, end := edge, duration-edge
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	draw := func(kind string) fault {
		f := fault{Kind: kind}
		switch kind {
		case "kill":
			f.Node, f.For = r.IntN(nodes), between(3*time.Second, 15*time.Second)
		case "quorum-loss", "partition":
			// Past NATS's lost-quorum interval (10 s, checked every 10 s),
			// so leaders step down and the survivor's stages stall.
			f.Node, f.For = r.IntN(nodes), between(25*time.Second, 40*time.Second)
		case "second-process":
			f.Node, f.For = r.IntN(nodes), 20*time.Second
		case "max-bytes-lower":
			f.Node, f.For = r.IntN(nodes), between(20*time.Second, 40*time.Second)
		case "hec-slow", "sls-slow":
			f.For, f.Param = between(10*time.Second, 25*time.Second), 1+2*r.Float64()
		case "hec-refuse":
			f.For, f.Param = between(10*time.Second, 20*time.Second), float64(20+r.IntN(80))
		case "buffer-full", "operator-consumer":
			f.For = fillTime + between(5*time.Second, 15*time.Second)
		default:
			f.For = between(10*time.Second, 30*time.Second)
		}
		return f
	}
	order := slices.Clone(kinds)
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	// Each kind's first window must fit: squeeze the gaps and windows
	// proportionally in a short run.
	first := make([]fault, len(order))
	var need time.Duration
	for i, k := range order {
		first[i] = draw(k)
		need += first[i].For + 3*time.Second
	}
	scale := 1.0
	if need > end-start {
		scale = float64(end-start) / float64(need)
	}
	var out []fault
	t := start
	for i := 0; ; i++ {
		var f fault
		gap := between(3*time.Second, 10*time.Second)
		if i < len(first) {
			f = first[i]
			f.For = max(time.Duration(float64(f.For)*scale), 3*time.Second)
			gap = time.Duration(float64(gap) * scale)
		} else {
			f = draw(kinds[r.IntN(len(kinds))])
		}
		f.At = t + gap
		if f.end() > end && i >= len(first) {
			break
		}
		out = append(out, f)
		t = f.end()
	}
	return out
}

// inject starts a fault; the returned func heals it.
func (c *chaosRun) inject(f fault) (heal func()) {
	for _, kind := range []func(fault) func(){c.injectNode, c.injectHEC, c.injectOther} {
		if heal := kind(f); heal != nil {
			return heal
		}
	}
	panic("unknown fault " + f.Kind)
}

// injectNode starts a fault on the nodes' processes or network; nil for
// another kind.
func (c *chaosRun) injectNode(f fault) (heal func()) {
	switch f.Kind {
	case "kill":
		c.killNode(f.Node)
		return func() { c.startNodeLogged(f.Node) }
	case "quorum-loss":
		for i := range c.nodes {
			if i != f.Node {
				c.killNode(i)
			}
		}
		return func() {
			for i := range c.nodes {
				if i != f.Node {
					c.startNodeLogged(i)
				}
			}
		}
	case "partition":
		return c.partition(f.Node)
	case "second-process":
		c.secondProcess(f.Node)
		return func() {}
	case "max-bytes-lower":
		c.lowerMaxBytes(f.Node)
		return func() { c.restoreMaxBytes(f.Node) }
	}
	return nil
}

// injectHEC starts a fault of the Splunk stand-in; nil for another kind.
func (c *chaosRun) injectHEC(f fault) (heal func()) {
	up := func() {
		if err := c.hec.Up(); err != nil {
			c.eventf("HEC stand-in could not listen again: %v", err)
		}
	}
	switch f.Kind {
	case "hec-down", "buffer-full":
		c.hec.Down()
		return up
	case "hec-busy":
		stop := c.every(f, time.Second, func(r *rand.Rand) {
			if r.IntN(2) == 0 {
				c.hec.BusyFor(time.Duration(500+r.IntN(2500)) * time.Millisecond)
			}
		})
		return func() { stop(); c.hec.BusyFor(0) }
	case "hec-slow":
		c.hec.Slow(time.Duration(f.Param * float64(time.Second)))
		return func() { c.hec.Slow(0) }
	case "hec-refuse":
		every := int(f.Param)
		c.hec.Refuse(func(ev json.RawMessage) bool {
			seq, ok := fieldInt(ev, `"seq":"`)
			if ok && seq%every == 0 {
				c.ledger.refuse(seq)
				return true
			}
			return false
		})
		return func() { c.hec.Refuse(nil) }
	case "hec-html":
		c.hec.ProxyHTML(true)
		return func() { c.hec.ProxyHTML(false) }
	case "hec-ack-off":
		c.hec.UseACK(false)
		return func() { c.hec.UseACK(true) }
	case "hec-hang":
		// Past the sink's timeout (10 s), and its three attempts past
		// ack_wait (20 s): the batches must keep their lease meanwhile.
		c.hec.Hang(25 * time.Second)
		return func() { c.hec.Hang(0) }
	case "sink-rename":
		c.hec.Down()
		return c.renameSink
	case "operator-consumer":
		// With Splunk down until OUT is past the trimmer's high-water
		// mark: the trimmer then removes every delivered record, and
		// must not count the operator's acks as the sink's.
		c.hec.Down()
		stop := c.operatorConsumer()
		return func() { stop(); up() }
	}
	return nil
}

// injectOther starts a fault of the SLS stand-in, the records or the
// policies; nil for another kind.
func (c *chaosRun) injectOther(f fault) (heal func()) {
	switch f.Kind {
	case "sls-5xx":
		stop := c.every(f, 500*time.Millisecond, func(*rand.Rand) { c.sls.FailPulls(4) })
		return func() { stop(); c.sls.FailPulls(0) }
	case "sls-slow":
		c.sls.SlowPulls(time.Duration(f.Param * float64(time.Second)))
		return func() { c.sls.SlowPulls(0) }
	case "oversized":
		c.writer.oversized <- struct{}{}
		return func() {}
	case "policy-slow":
		return c.addPolicy("policy-slow", "zz_chaos_slow.rego", slowPolicy)
	case "policy-break":
		// A syntax error: the reload must fail and the old set keep running.
		return c.addPolicy("policy-break", "zz_chaos_broken.rego", "package schema.sls_audit\n\nlog contains x if {\n")
	}
	return nil
}

// addPolicy writes a policy file beside the shipped ones; the returned
// func removes it.
func (c *chaosRun) addPolicy(fault, name, src string) (remove func()) {
	path := filepath.Join(c.policyDir, name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		c.eventf("%s: %v", fault, err)
	}
	return func() { _ = os.Remove(path) }
}

// slowPolicy adds to the shipped schema a rule that yields nothing but
// takes seconds (past the transform's eval_timeout, so each is tried twice)
// on six records in a row out of 20,000: they are in one RAW batch, whose
// work (12 s) outlasts the transform's ack_wait (10 s). Only those records
// may go to the DLQ; a second rule also turns the policy's fast path off.
const slowPolicy = `package schema.sls_audit

log contains x if {
	to_number(input.seq) % 20000 < 6
	count([1 | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); i + j < 0]) > 0
	x := {}
}
`

// every runs fn on a ticker until the returned stop is called; its random
// numbers come from the seed and the fault, so a run repeats.
func (c *chaosRun) every(f fault, d time.Duration, fn func(*rand.Rand)) (stop func()) {
	done := make(chan struct{})
	r := rand.New(rand.NewPCG(c.opts.seed, uint64(f.At)))
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn(r)
			}
		}
	}()
	return func() { close(done) }
}

// operatorConsumer does what an operator's `nats consumer add OUT debug`
// and a reader that acks everything do, on a node's NATS port: a durable
// consumer with no filter on OUT. The trimmer must not take its ack floor
// for the sinks'; the returned func deletes it.
func (c *chaosRun) operatorConsumer() (stop func()) {
	var addr string
	for _, n := range c.nodes {
		if n.pid() != 0 {
			addr = n.nats
			break
		}
	}
	nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(-1), operatorLogin)
	if err != nil {
		c.eventf("operator-consumer: connect to %s: %v", addr, err)
		return func() {}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		c.eventf("operator-consumer: %v", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := js.CreateOrUpdateConsumer(ctx, queue.StreamOut, jetstream.ConsumerConfig{Durable: "chaos-operator", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		cancel()
		nc.Close()
		c.eventf("operator-consumer: %v", err)
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		acked := 0
		for ctx.Err() == nil {
			msgs, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for m := range msgs.Messages() {
				if m.Ack() == nil {
					acked++
				}
			}
		}
		c.eventf("operator-consumer acked %d OUT messages", acked)
	}()
	return func() {
		cancel()
		<-done
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		if err := js.DeleteConsumer(dctx, queue.StreamOut, "chaos-operator"); err != nil {
			c.eventf("operator-consumer: delete: %v", err)
		}
		nc.Close()
	}
}

// secondProcess starts a second `sluice run` on node i's config, as an
// operator who forgot the first one would: it must refuse at once, naming
// the holder of the data dir, and leave the running node alone.
func (c *chaosRun) secondProcess(i int) {
	n := c.nodes[i]
	out, exited, err := c.probe(i, 20*time.Second)
	switch {
	case !exited:
		c.violation("second-process: a second sluice run on %s's data dir was still running after 20 s", n.name)
	case strings.Contains(out, "is in use by") && strings.Contains(out, "one process per data dir"):
		c.eventf("second-process refused as it should: %s", lastLine(out))
	default:
		c.violation("second-process: exited (%v) without naming the data dir's holder: %s", err, lastLine(out))
	}
}

// lowerMaxBytes restarts node i with queue.max_bytes lowered by a quarter,
// as an operator shrinking the buffer does. The node must either start
// with the smaller streams, or refuse at once naming queue.max_bytes
// (then it is started with the old size again); never fail otherwise.
func (c *chaosRun) lowerMaxBytes(i int) {
	n := c.nodes[i]
	c.stopNode(i)
	lower := c.opts.maxBytes * 3 / 4
	if err := c.writeConfig(i, lower); err != nil {
		c.eventf("max-bytes-lower: %v", err)
	}
	out, exited, err := c.probe(i, 15*time.Second)
	switch {
	case !exited:
		c.eventf("max-bytes-lower: %s starts with queue.max_bytes %d MiB", n.name, lower>>20)
	case strings.Contains(out, "queue.max_bytes") && strings.Contains(out, "stores"):
		c.eventf("max-bytes-lower: %s refused as it should: %s", n.name, lastLine(out))
		if err := c.writeConfig(i, c.opts.maxBytes); err != nil {
			c.eventf("max-bytes-lower: %v", err)
		}
	default:
		c.violation("max-bytes-lower: %s exited (%v) with queue.max_bytes %d MiB: %s", n.name, err, lower>>20, lastLine(out))
		if err := c.writeConfig(i, c.opts.maxBytes); err != nil {
			c.eventf("max-bytes-lower: %v", err)
		}
	}
	c.startNodeLogged(i)
}

// restoreMaxBytes restarts node i with the run's queue.max_bytes.
func (c *chaosRun) restoreMaxBytes(i int) {
	c.stopNode(i)
	if err := c.writeConfig(i, c.opts.maxBytes); err != nil {
		c.eventf("max-bytes-lower: %v", err)
	}
	c.startNodeLogged(i)
}

// renameSink does what an operator renaming a sink with a backlog does:
// stop every node, rename the sink in each config (and in the policy that
// names it), start them, see the old sink's backlog named, and move it to
// the renamed sink with `sluice backlog move`. Splunk comes back once the
// nodes run the new config, so the backlog is still on the old subject.
func (c *chaosRun) renameSink() {
	for i := range c.nodes {
		c.stopNode(i)
	}
	c.mu.Lock()
	old := c.sinkName
	c.renames++
	c.sinkName = fmt.Sprintf("splunk-r%d", c.renames)
	renamed := c.sinkName
	c.mu.Unlock()
	c.splunk.owe(queue.OutSubject(renamed))
	if c.hec2 != nil { // the shipped schema names its sink when there are two
		path := filepath.Join(c.policyDir, "schema", "sls_audit.rego")
		b, err := os.ReadFile(path)
		if err == nil {
			err = os.WriteFile(path, []byte(strings.Replace(string(b), `"sink": "`+old+`",`, `"sink": "`+renamed+`",`, 1)), 0o644)
		}
		if err != nil {
			c.eventf("sink-rename: policy: %v", err)
		}
	}
	for i := range c.nodes {
		if err := c.writeConfig(i, c.opts.maxBytes); err != nil {
			c.eventf("sink-rename: %v", err)
		}
		c.startNodeLogged(i)
	}
	if err := c.hec.Up(); err != nil {
		c.eventf("HEC stand-in could not listen again: %v", err)
	}
	// Not /readyz: with the backlog filling OUT the nodes are not ready
	// until it moves. An operator retries until the node answers.
	admin := c.nodes[0].admin
	cli := func(args ...string) *exec.Cmd {
		cmd := exec.Command(c.bin, append(args, "--admin", admin)...)
		cmd.Env = c.env // the admin token, from the environment as an operator's shell has it
		return cmd
	}
	var list []byte
	var err error
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		if list, err = cli("backlog", "list", "--json").Output(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	var orphans []struct{ Subject string }
	if err == nil {
		err = json.Unmarshal(list, &orphans)
	}
	named := slices.ContainsFunc(orphans, func(o struct{ Subject string }) bool { return o.Subject == queue.OutSubject(old) })
	switch {
	case err != nil:
		c.violation("sink-rename: sluice backlog list: %v", err)
	case !named:
		c.violation("sink-rename: the backlog of %s (Splunk was down) is not named by sluice backlog list: %s", old, strings.TrimSpace(string(list)))
	}
	var out []byte
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(2 * time.Second) {
		if out, err = cli("backlog", "move", "--from", old, "--to", renamed).CombinedOutput(); err == nil || time.Now().After(deadline) {
			break
		}
		c.eventf("sink-rename: backlog move: %v: %s (trying again)", err, lastLine(string(out)))
	}
	if err != nil {
		c.violation("sink-rename: sluice backlog move --from %s --to %s: %v: %s", old, renamed, err, lastLine(string(out)))
		return
	}
	c.eventf("sink-rename: %s → %s: %s", old, renamed, lastLine(string(out)))
}

// probe runs `sluice run -c config` on node i's config for at most d: whether it exited on
// its own by then, and what it printed. One still running is stopped with
// SIGTERM and waited for.
func (c *chaosRun) probe(i int, d time.Duration) (out string, exited bool, err error) {
	var buf strings.Builder
	var mu sync.Mutex
	cmd := c.nodeCommand(i, "run", "-c", c.nodes[i].config)
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	cmd.Env, cmd.Stdout, cmd.Stderr = c.env, w, w
	if err := cmd.Start(); err != nil {
		return err.Error(), true, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
		exited = true
	case <-time.After(d):
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return buf.String(), exited, err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
