package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// failoverBench: a three-node cluster under a steady load (the chaos
// harness's nodes, stand-ins, writer and ledger), one node SIGKILLed or
// cut off from its peers, and how long each source shard took to flow
// again to each sink, the copies the fault caused and the records missing.
func failoverBench(args []string) error {
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	kind := fs.String("fault", "kill", "kill (SIGKILL a node) or partition (cut its cluster link; as root)")
	runs := fs.Int("runs", 3, "runs; the median is printed after them")
	rate := fs.Float64("rate", 1, "MB/s of 1 KB audit records offered to SLS (each source reads all of it)")
	warmup := fs.Duration("warmup", 30*time.Second, "steady load before the fault")
	window := fs.Duration("window", 90*time.Second, "how long to wait for every shard to flow again before healing (kill: the node restarts; partition: the link comes up)")
	drain := fs.Duration("drain-timeout", 5*time.Minute, "how long to wait for the backlog after healing")
	out := fs.String("out", "", "directory for the node logs, a folder a run (default: temporary ones, kept)")
	logLevel := fs.String("log-level", "warn", "the nodes' log level")
	_ = fs.Parse(args)
	if *kind != "kill" && *kind != "partition" {
		return fmt.Errorf("--fault %q: want kill or partition", *kind)
	}
	if why := netnsNeeds(); *kind == "partition" && why != "" {
		return fmt.Errorf("--fault partition: %s", why)
	}
	o := chaosOpts{nodes: 3, rate: *rate, seed: 1, drain: *drain, logLevel: *logLevel, secondSource: true, netns: *kind == "partition"}
	// Room for two minutes of both sources, and a duplicate window RAW
	// holds (as the chaos run sizes it): the buffer must not fill, or its
	// stalls would be measured as the fault's.
	o.maxBytes = max(256<<20, int64(2*o.rate*1e6*120))
	o.dupWindow = max(2*time.Second, time.Duration(0.3*float64(o.maxBytes)/(2*o.rate*1e6)*0.8*float64(time.Second)).Round(time.Second))
	o.faults = []string{*kind}
	fmt.Printf("failover: three nodes, %s, %.1f MB/s into 4 SLS shards read by two sources (audit → splunk, second → splunk2), fault after %s, window %s\n",
		*kind, *rate, *warmup, *window)
	var rows []failoverRow
	for r := range *runs {
		if *out != "" {
			o.out = filepath.Join(*out, fmt.Sprint("run", r+1))
		}
		row, err := failoverRun(o, fault{Kind: *kind, At: *warmup, For: *window, Node: r % 3})
		if err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
		row.run = r + 1
		rows = append(rows, row)
		row.details(os.Stdout)
	}
	printFailover(os.Stdout, rows, *window)
	for _, r := range rows {
		if r.missing > 0 {
			return fmt.Errorf("run %d: %d records missing", r.run, r.missing)
		}
	}
	return nil
}

// flowSource is one source's path to its sink: the consumer group whose
// shards the nodes hold, and the book of the sink its records go to.
type flowSource struct {
	source, group, sink string
}

var failoverSources = []flowSource{{"audit", "sluice", "splunk"}, {"second", "sluice-second", "splunk2"}}

// failoverRow is one run.
type failoverRow struct {
	run     int
	fault   fault
	held    [][]int           // by source: the shards the victim held at the fault
	resumed [][]time.Duration // by source, by shard: -1 when not within the window
	base    time.Duration     // p50 latency before the fault
	copies  int               // over both sinks
	bySink  []string
	missing int
	drained bool
}

// failoverRun starts a cluster, lets it warm up, injects f and waits for
// every shard of every source to flow again (or f's window to pass),
// heals, drains and settles the books.
func failoverRun(o chaosOpts, f fault) (failoverRow, error) {
	row := failoverRow{fault: f}
	c, err := newChaosRun(o)
	if c != nil {
		defer c.cleanup()
	}
	if err != nil {
		return row, err
	}
	c.schedule = []fault{f}
	c.start = time.Now()
	c.ledger.start = c.start
	s := newSampler(c)
	go s.run()
	w, err := startWriter(c)
	if err != nil {
		return row, err
	}
	c.writer = w
	time.Sleep(time.Until(c.start.Add(f.At)))
	row.base = c.ledger.p50()
	for _, src := range failoverSources {
		row.held = append(row.held, c.heldBy(src.group, c.nodes[f.Node].name))
	}
	c.mu.Lock()
	c.begun = 1
	c.mu.Unlock()
	c.eventf("fault: %s (holding shards %v)", f, row.held)
	at := time.Since(c.start)
	heal := c.inject(f)
	deadline := at + f.For
	for time.Since(c.start) < deadline && !allResumed(c.ledger.resumed(at, deadline)) {
		time.Sleep(500 * time.Millisecond)
	}
	row.resumed = c.ledger.resumed(at, deadline)
	heal()
	c.eventf("healed: %s", f.Kind)
	time.Sleep(10 * time.Second) // a little load on the healed cluster
	c.eventf("writing stops; waiting for the backlog to drain")
	w.stop()
	row.drained = c.waitDrained()
	s.stop()
	res := c.result(s, w, row.drained)
	row.missing = res.missing
	for _, sr := range res.sinks {
		row.copies += sr.duplicated
		row.bySink = append(row.bySink, fmt.Sprintf("%s %d", sr.name, sr.duplicated))
	}
	return row, nil
}

// heldBy is the shards of a consumer group that node holds now.
func (c *chaosRun) heldBy(group, node string) []int {
	var held []int
	for shard, owner := range c.sls.Owners(group) {
		if strings.HasPrefix(owner, node) {
			held = append(held, shard)
		}
	}
	sort.Ints(held)
	return held
}

// resumed says, for each book (a source's sink) and each shard, how long
// after at the sink first accepted a record written to that shard at or
// after at: the fault's stop of the shard's flow, plus the pipeline's
// latency. -1 when no such record arrived by cutoff.
func (l *ledger) resumed(at, cutoff time.Duration) [][]time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	from, until := uint32(at.Milliseconds()), uint32(cutoff.Milliseconds())
	out := make([][]time.Duration, len(l.books))
	for i, b := range l.books {
		out[i] = slices.Repeat([]time.Duration{-1}, chaosShards)
		for seq, sent := range l.sentAt {
			shard := l.shard[seq]
			if sent < from || shard < 0 || int(shard) >= chaosShards {
				continue
			}
			a := b.arrived[seq]
			if a == 0 || a > until {
				continue
			}
			if d := time.Duration(a-from) * time.Millisecond; out[i][shard] < 0 || d < out[i][shard] {
				out[i][shard] = d
			}
		}
	}
	return out
}

// p50 is the median latency of the first sink so far.
func (l *ledger) p50() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lat.quantile(0.5)
}

func allResumed(r [][]time.Duration) bool {
	for _, shards := range r {
		if slices.Contains(shards, -1) {
			return false
		}
	}
	return true
}

// slowest is the longest of the shards' times (those in held when
// victim, the others when not), or -1 when one did not resume; 0 when
// there are none.
func slowest(shards []time.Duration, held []int, victim bool) time.Duration {
	var m time.Duration
	for shard, d := range shards {
		if slices.Contains(held, shard) != victim {
			continue
		}
		if d < 0 {
			return -1
		}
		m = max(m, d)
	}
	return m
}

// details prints a run's per-shard times, the victim's shards marked.
func (r failoverRow) details(w io.Writer) {
	fmt.Fprintf(w, "run %d: %s; p50 latency %s\n", r.run, r.fault, r.base.Round(time.Millisecond))
	for i, src := range failoverSources {
		if i >= len(r.resumed) {
			break
		}
		var parts []string
		for shard, d := range r.resumed[i] {
			mark := ""
			if slices.Contains(r.held[i], shard) {
				mark = "*"
			}
			parts = append(parts, fmt.Sprintf("shard %d%s %s", shard, mark, fmtResume(d, r.fault.For)))
		}
		fmt.Fprintf(w, "  %s → %s: %s\n", src.source, src.sink, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "  copies %d (%s), missing %d (* the node's shards)\n", r.copies, strings.Join(r.bySink, ", "), r.missing)
}

func fmtResume(d, window time.Duration) string {
	if d < 0 {
		return fmt.Sprintf(">%.0fs", window.Seconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// printFailover prints a row a run and the median: for each source and
// its sink, the seconds until every shard flowed again (the slowest
// shard), those the node held and the others apart; then the copies and
// the missing records.
func printFailover(w io.Writer, rows []failoverRow, window time.Duration) {
	header := []string{"run", "fault"}
	for _, src := range failoverSources {
		header = append(header, src.source+"→"+src.sink)
	}
	header = append(header, "copies", "missing")
	fmt.Fprintf(w, "\nseconds from the fault until a record written after it reached the sink, from every shard the node held / every other shard (>%.0fs: not within the window)\n", window.Seconds())
	line := func(cells []string) { fmt.Fprintf(w, "%-6s %-16s %18s %18s %8s %8s\n", toAny(cells)...) }
	line(header)
	var times [][2][]time.Duration // by source: the node's shards, the others
	var copies, missing []int
	for _, r := range rows {
		cells := []string{fmt.Sprint(r.run), fmt.Sprintf("%s node-%d", r.fault.Kind, r.fault.Node+1)}
		for i := range failoverSources {
			if len(times) <= i {
				times = append(times, [2][]time.Duration{})
			}
			var held []int
			if i < len(r.held) {
				held = r.held[i]
			}
			own, other := slowest(r.resumed[i], held, true), slowest(r.resumed[i], held, false)
			times[i][0], times[i][1] = append(times[i][0], own), append(times[i][1], other)
			cells = append(cells, fmtResume(own, window)+" / "+fmtResume(other, window))
		}
		copies, missing = append(copies, r.copies), append(missing, r.missing)
		line(append(cells, fmt.Sprint(r.copies), fmt.Sprint(r.missing)))
	}
	if len(rows) == 0 {
		return
	}
	cells := []string{"median", rows[0].fault.Kind}
	for _, t := range times {
		cells = append(cells, fmtResume(medianResume(t[0]), window)+" / "+fmtResume(medianResume(t[1]), window))
	}
	line(append(cells, fmt.Sprint(medianInt(copies)), fmt.Sprint(medianInt(missing))))
}

// medianResume orders "not resumed" (-1) after every time.
func medianResume(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	key := func(d time.Duration) time.Duration {
		if d < 0 {
			return 1 << 62
		}
		return d
	}
	slices.SortFunc(s, func(a, b time.Duration) int { return cmp.Compare(key(a), key(b)) })
	return s[len(s)/2]
}

func medianInt(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
