package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

type chaosResult struct {
	produced, produceFailed int
	prodBytes               int64
	sinks                   []sinkResult
	dlqReasons              map[string]int
	dlqErr                  error
	refused                 int
	missing                 int // over every sink
	p50, p99, maxLat        time.Duration
	crashes                 int
	violations              []string
	drained                 bool
	bufferFull, reloadFail  float64
	actorRestarts           float64
	peakRSS                 map[string]int64
	faults                  []faultResult
}

// sinkResult settles one sink's book.
type sinkResult struct {
	name                  string
	delivered, duplicated int
	dups                  map[int]int // by the fault blamed (chaosRun.cause)
	foreign               int
	dlq                   int // produced records found in the DLQ and never delivered
	dlqAlsoDelivered      int
	missing               int
	missingSample         []int
	missingAt             []uint32 // when each missing seq was sent, ms after the start
	dlqAt                 []uint32 // when each DLQ'd seq was sent
}

// result settles the books: each produced seq delivered, dead-lettered or
// missing, for every sink it is owed to.
func (c *chaosRun) result(s *sampler, w *writer, drained bool) *chaosResult {
	inDLQ, reasons, dlqErr := c.readDLQ()
	l := c.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &chaosResult{produced: l.produced, prodBytes: l.prodBytes,
		dlqReasons: reasons, dlqErr: dlqErr, refused: len(l.refused), drained: drained, peakRSS: map[string]int64{},
		p50: l.lat.quantile(0.5), p99: l.lat.quantile(0.99), maxLat: l.lat.max}
	w.mu.Lock()
	r.produceFailed = w.failed
	w.mu.Unlock()
	for _, b := range l.books {
		sr := sinkResult{name: b.name, delivered: b.unique, dups: b.dups, foreign: b.foreign}
		for seq, st := range l.state {
			if st != seqProduced {
				continue
			}
			if d := b.delivered[seq]; d > 1 {
				sr.duplicated += int(d) - 1
			}
			dead := b.inDLQ(inDLQ, seq)
			switch {
			case b.delivered[seq] > 0 && dead:
				sr.dlqAlsoDelivered++
			case b.delivered[seq] > 0:
			case dead:
				sr.dlq++
				sr.dlqAt = append(sr.dlqAt, l.sentAt[seq])
			default:
				sr.missing++
				sr.missingAt = append(sr.missingAt, l.sentAt[seq])
				if len(sr.missingSample) < 20 {
					sr.missingSample = append(sr.missingSample, seq)
				}
			}
		}
		r.missing += sr.missing
		r.sinks = append(r.sinks, sr)
	}
	c.mu.Lock()
	r.crashes = c.crashes
	r.violations = slices.Clone(c.violations)
	r.faults = slices.Clone(c.faultResults)
	c.mu.Unlock()
	r.bufferFull, r.reloadFail, r.actorRestarts = s.total("buffer_full"), s.total("reload_failed"), s.total("actor_restarts")
	for _, n := range c.nodes {
		n.mu.Lock()
		r.peakRSS[n.name] = n.peakRSS
		n.mu.Unlock()
	}
	return r
}

// inDLQ says whether seq is in the DLQ on a path that b owes it on.
func (b *book) inDLQ(dead map[string]map[int]bool, seq int) bool {
	for _, o := range b.origins {
		if dead[o][seq] {
			return true
		}
	}
	return false
}

var digits = regexp.MustCompile(`[0-9]+`)

// readDLQ reads the whole DLQ stream through a node's NATS port, as the
// nats CLI would: which seqs are there, by the subject they were on, and why.
func (c *chaosRun) readDLQ() (map[string]map[int]bool, map[string]int, error) {
	seqs, reasons := map[string]map[int]bool{}, map[string]int{}
	err := c.eachDLQMessage(5*time.Minute, func(m jetstream.Msg) {
		reason := m.Headers().Get(batch.HeaderStage) + ": " + digits.ReplaceAllString(m.Headers().Get(batch.HeaderReason), "N")
		if len(reason) > 110 {
			reason = reason[:110] + "…"
		}
		reasons[reason]++
		recs, err := batch.Decode(m.Data())
		if err != nil {
			return
		}
		origin := m.Headers().Get(batch.HeaderOrigin)
		if seqs[origin] == nil {
			seqs[origin] = map[int]bool{}
		}
		for _, rec := range recs {
			if seq, ok := fieldInt(rec, `"seq":"`); ok {
				seqs[origin][seq] = true
			}
		}
	})
	return seqs, reasons, err
}

// eachDLQMessage hands fn every message of the DLQ stream, read through a
// running node's NATS port as the operator user, within timeout.
func (c *chaosRun) eachDLQMessage(timeout time.Duration, fn func(jetstream.Msg)) error {
	var addr string
	for _, n := range c.nodes {
		if n.pid() != 0 {
			addr = n.nats
			break
		}
	}
	if addr == "" {
		return fmt.Errorf("no node is running")
	}
	nc, err := nats.Connect("nats://"+addr, operatorLogin)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := js.Stream(ctx, queue.StreamDLQ)
	if err != nil {
		return fmt.Errorf("DLQ stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	for read := uint64(0); read < info.State.Msgs; {
		msgs, err := cons.Fetch(512, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range msgs.Messages() {
			n++
			read++
			fn(m)
			if md, _ := m.Metadata(); md != nil && md.Sequence.Stream >= info.State.LastSeq {
				read = info.State.Msgs
			}
		}
		if n == 0 && msgs.Error() != nil {
			return msgs.Error()
		}
	}
	return nil
}

// write prints the table and the timeline, and writes them with the
// picture into the output directory.
func (r *chaosResult) write(c *chaosRun, s *sampler) error {
	f, err := os.Create(filepath.Join(c.opts.out, "report.txt"))
	if err != nil {
		return err
	}
	defer f.Close()
	out := io.MultiWriter(os.Stdout, f)
	r.table(out, c)
	r.faultTable(out)
	s.resources(out)
	fmt.Fprintln(out, "\ntimeline:")
	c.mu.Lock()
	for _, e := range c.events {
		fmt.Fprintf(out, "  %s  %s\n", fmtOffset(e.at), e.what)
	}
	c.mu.Unlock()
	if err := s.writeCSV(filepath.Join(c.opts.out, "samples.csv")); err != nil {
		return err
	}
	svg := filepath.Join(c.opts.out, "chaos.svg")
	if err := plotChaos(svg, c, s); err != nil {
		return fmt.Errorf("picture: %w", err)
	}
	fmt.Fprintf(out, "\npicture: %s\nnode logs: %s\n", svg, c.opts.out)
	return nil
}

func (r *chaosResult) table(w io.Writer, c *chaosRun) {
	o := c.opts
	kinds := map[string]int{}
	for _, f := range c.schedule {
		kinds[f.Kind]++
	}
	var injected []string
	for _, k := range faultKinds {
		if kinds[k] > 0 {
			injected = append(injected, fmt.Sprintf("%s×%d", k, kinds[k]))
		}
	}
	if o.secondSource {
		injected = append(injected, "second-source (all run long)")
	}
	if len(injected) == 0 {
		injected = []string{"none"}
	}
	fmt.Fprintf(w, "\nchaos run: %d node(s), %s, %.1f MB/s offered, seed %d, queue.max_bytes %d MiB, duplicate_window %s\n", o.nodes, o.duration, o.rate, o.seed, o.maxBytes>>20, o.dupWindow)
	fmt.Fprintf(w, "machine:   %s\n", machine())
	fmt.Fprintf(w, "faults:    %s\n\n", strings.Join(injected, ", "))
	row := func(name string, n int, note string) { fmt.Fprintf(w, "  %-22s %12s  %s\n", name, commas(n), note) }
	row("produced", r.produced, fmt.Sprintf("records confirmed by SLS (%.0f MB); %d the producer gave up on are not counted", float64(r.prodBytes)/1e6, r.produceFailed))
	for _, sr := range r.sinks {
		if len(r.sinks) > 1 {
			fmt.Fprintf(w, "  sink %s:\n", sr.name)
		}
		row("delivered", sr.delivered, "accepted by Splunk at least once")
		note := fmt.Sprintf("never delivered, in the DLQ (%d also in the DLQ but delivered later)", sr.dlqAlsoDelivered)
		if sr.name == r.sinks[0].name {
			note = fmt.Sprintf("never delivered, in the DLQ (%d refused by Splunk with 400; %d also in the DLQ but delivered later)", r.refused, sr.dlqAlsoDelivered)
		}
		row("DLQ'd", sr.dlq, note)
		verdict := "ok"
		if sr.missing > 0 {
			verdict = fmt.Sprintf("LOST, e.g. seqs %v", sr.missingSample)
		}
		row("missing", sr.missing, "must be 0: "+verdict)
		byKind := map[string]int{}
		for i, n := range sr.dups {
			k := "none"
			if i >= 0 {
				k = c.schedule[i].Kind
			}
			byKind[k] += n
		}
		var causes []string
		for _, k := range sortedKeys(byKind) {
			causes = append(causes, fmt.Sprintf("%s %s", k, commas(byKind[k])))
		}
		row("duplicated", sr.duplicated, fmt.Sprintf("extra copies at Splunk (%.3f %% of produced); by fault: %s", 100*float64(sr.duplicated)/math.Max(1, float64(r.produced)), strings.Join(causes, ", ")))
		if sr.foreign > 0 {
			fmt.Fprintf(w, "  %-22s %12s  events at Splunk that no confirmed write produced (a write the producer thought failed)\n", "unexpected", commas(sr.foreign))
		}
	}
	fmt.Fprintln(w, "  DLQ by reason:")
	for _, reason := range sortedKeys(r.dlqReasons) {
		fmt.Fprintf(w, "  %-22s %12s    %s\n", "", commas(r.dlqReasons[reason]), reason)
	}
	if r.dlqErr != nil {
		fmt.Fprintf(w, "  %-22s %12s    reading the DLQ failed: %v\n", "", "", r.dlqErr)
	}
	fmt.Fprintf(w, "  %-22s %12s  p50 %s, p99 %s, max %s\n", "latency SLS→Splunk", "", r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.maxLat.Round(time.Millisecond))
	var rss []string
	for _, n := range c.nodes {
		rss = append(rss, fmt.Sprintf("%s %d MB", n.name, r.peakRSS[n.name]>>20))
	}
	fmt.Fprintf(w, "  %-22s %12s  %s\n", "peak RSS", "", strings.Join(rss, ", "))
	fmt.Fprintf(w, "  %-22s %12s  %.0f publishes refused with buffer full (the source paused and retried), %.0f failed policy reloads (old set kept), %.0f actor restarts, %d unplanned node exits\n",
		"seen inside", "", r.bufferFull, r.reloadFail, r.actorRestarts, r.crashes)
	if !r.drained {
		fmt.Fprintf(w, "  the backlog did not drain within %s\n", o.drain)
	}
	for _, v := range r.violations {
		fmt.Fprintf(w, "  VIOLATION: %s\n", v)
	}
}

// resources prints RSS, goroutines and open files over time: for a soak,
// they must be flat.
func (s *sampler) resources(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) < 10 {
		return
	}
	fmt.Fprintln(w, "\nresources over time (per node: RSS MB / goroutines / open files):")
	rows := 10
	for i := 0; i < rows; i++ {
		sm := s.samples[(len(s.samples)-1)*i/(rows-1)]
		var cols []string
		for j := range s.c.nodes {
			cols = append(cols, fmt.Sprintf("%5.0f / %5.0f / %4.0f", sm.rss[j]/(1<<20), sm.goroutines[j], sm.fds[j]))
		}
		fmt.Fprintf(w, "  %s  %s   delivered %s/s\n", fmtOffset(sm.at), strings.Join(cols, "   "), commas(int(sm.delivRate)))
	}
	// Flat: the median of the last tenth against that of the second tenth
	// (the first holds the warm-up).
	tenth := len(s.samples) / 10
	for j, n := range s.c.nodes {
		med := func(from int, get func(chaosSample) float64) float64 {
			var v []float64
			for _, sm := range s.samples[from : from+tenth] {
				if x := get(sm); !math.IsNaN(x) {
					v = append(v, x)
				}
			}
			if len(v) == 0 {
				return math.NaN()
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		rss := func(sm chaosSample) float64 { return sm.rss[j] / (1 << 20) }
		gor := func(sm chaosSample) float64 { return sm.goroutines[j] }
		fds := func(sm chaosSample) float64 { return sm.fds[j] }
		fmt.Fprintf(w, "  %s, median of the 2nd tenth → last tenth: RSS %.0f → %.0f MB, goroutines %.0f → %.0f, open files %.0f → %.0f\n", n.name,
			med(tenth, rss), med(len(s.samples)-tenth, rss), med(tenth, gor), med(len(s.samples)-tenth, gor), med(tenth, fds), med(len(s.samples)-tenth, fds))
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || (m[keys[i]] == m[keys[j]] && keys[i] < keys[j]) })
	return keys
}

func commas(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + commas(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// writeCSV keeps every sample, for a closer look than the picture gives.
func (s *sampler) writeCSV(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	b.WriteString("seconds,produced,delivered,produced_per_s,delivered_per_s,p99_s")
	for _, n := range s.c.nodes {
		fmt.Fprintf(&b, ",%[1]s_rss_mb,%[1]s_goroutines,%[1]s_open_files", n.name)
	}
	b.WriteByte('\n')
	for _, sm := range s.samples {
		fmt.Fprintf(&b, "%.1f,%d,%d,%.0f,%.0f,%.3f", sm.at.Seconds(), sm.produced, sm.delivered, sm.prodRate, sm.delivRate, sm.p99.Seconds())
		for j := range s.c.nodes {
			fmt.Fprintf(&b, ",%.0f,%.0f,%.0f", sm.rss[j]/(1<<20), sm.goroutines[j], sm.fds[j])
		}
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// faultResult is what one injected fault did: the HEC requests and the
// events Splunk accepted while it lasted, and what became of the records
// sent from its start to the next fault's.
type faultResult struct {
	f                  fault
	index              int // in the schedule
	requests, accepted int
}

// faultTable prints a row per injected fault. Records are charged to the
// last fault that began before they were sent (a kill's copies and a
// full buffer's waits come after its window).
func (r *chaosResult) faultTable(w io.Writer) {
	if len(r.faults) == 0 {
		return
	}
	fmt.Fprintln(w, "\nper fault (copies: duplicates blamed on it; DLQ'd and missing: records charged to the last fault begun before they were sent; missing must be 0):")
	fmt.Fprintf(w, "  %-7s %-44s %9s %8s %9s %9s %7s %7s %7s\n", "at", "fault", "HEC req", "req/s", "accepted", "req/event", "copies", "DLQ'd", "missing")
	count := func(at []uint32, from, to time.Duration) int {
		n := 0
		for _, t := range at {
			if d := time.Duration(t) * time.Millisecond; d >= from && d < to {
				n++
			}
		}
		return n
	}
	for i, fr := range r.faults {
		to := time.Duration(math.MaxInt64)
		if i+1 < len(r.faults) {
			to = r.faults[i+1].f.At
		}
		var dlq, missing, copies int
		for _, sr := range r.sinks {
			dlq += count(sr.dlqAt, fr.f.At, to)
			missing += count(sr.missingAt, fr.f.At, to)
			copies += sr.dups[fr.index]
		}
		perEvent := "-"
		if fr.accepted > 0 {
			perEvent = fmt.Sprintf("%.4f", float64(fr.requests)/float64(fr.accepted))
		}
		name := fr.f.String()
		if len(name) > 44 {
			name = name[:43] + "…"
		}
		fmt.Fprintf(w, "  %-7s %-44s %9s %8.1f %9s %9s %7s %7s %7s\n", fmtOffset(fr.f.At), name, commas(fr.requests),
			float64(fr.requests)/max(fr.f.For.Seconds(), 1), commas(fr.accepted), perEvent, commas(copies), commas(dlq), commas(missing))
	}
}
