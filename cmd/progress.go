package cmd

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicehq/sluice/node"
)

// progress prints the pipeline's counts from the node's own metrics: one
// line rewritten in place on a terminal, a line every few seconds otherwise.
type progress struct {
	n        *node.Node
	w        io.Writer
	tty      bool
	start    time.Time
	last     time.Time
	lastDone float64
	printed  time.Time
}

func newProgress(n *node.Node, w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	now := time.Now()
	return &progress{n: n, w: w, tty: tty, start: now, last: now}
}

type counts struct {
	pulled, buffered, delivered, dropped, dlq float64
}

func (p *progress) counts() counts {
	reg := p.n.Registry
	outIn := node.MetricSum(reg, "sluice_queue_published_records_total", map[string]string{"stream": "OUT"})
	outAcked := node.MetricSum(reg, "sluice_queue_acked_records_total", map[string]string{"stream": "OUT"})
	return counts{
		pulled:    node.MetricSum(reg, "sluice_queue_published_records_total", map[string]string{"stream": "RAW"}),
		buffered:  max(outIn-outAcked, 0),
		delivered: node.MetricSum(reg, "sluice_sink_events_total", nil),
		dropped:   node.MetricSum(reg, "sluice_transform_dropped_total", nil),
		dlq:       node.MetricSum(reg, "sluice_dlq_records_total", nil),
	}
}

func (p *progress) line(c counts, rate float64) string {
	return fmt.Sprintf("pulled %.0f | waiting for Splunk %.0f | delivered %.0f | dropped by policy %.0f | DLQ %.0f | %.0f events/s",
		c.pulled, c.buffered, c.delivered, c.dropped, c.dlq, rate)
}

func (p *progress) tick() {
	now := time.Now()
	c := p.counts()
	rate := (c.delivered - p.lastDone) / now.Sub(p.last).Seconds()
	p.last, p.lastDone = now, c.delivered
	switch {
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", p.line(c, rate))
	case now.Sub(p.printed) >= 5*time.Second:
		fmt.Fprintln(p.w, p.line(c, rate))
		p.printed = now
	}
}

func (p *progress) final(w io.Writer) {
	if p.tty {
		fmt.Fprintln(p.w)
	}
	c := p.counts()
	secs := time.Since(p.start).Seconds()
	fmt.Fprintf(w, "summary after %.1fs: %s\n", secs, p.line(c, c.delivered/secs))
}
