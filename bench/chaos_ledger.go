package main

import (
	"bytes"
	"math"
	"strconv"
	"sync"
	"time"
)

// A chaos run's books: every record the writer produced carries a unique
// "seq" and its send time ("sent_ms"); the ledger learns from the HEC
// stand-in which seqs Splunk accepted, how often and how late.

const (
	seqUnsent   = 0
	seqInFlight = 1 // handed to the SDK producer, not yet confirmed by SLS
	seqProduced = 2 // SLS confirmed it: it must arrive
	seqFailed   = 3 // the producer gave up: SLS never stored it
)

type ledger struct {
	mu        sync.Mutex
	state     []uint8  // by seq
	delivered []uint16 // times Splunk accepted each seq (saturating)
	refused   map[int]bool
	produced  int
	prodBytes int64
	unique    int // seqs delivered at least once
	dups      map[string]int
	foreign   int // accepted events with no seq of ours
	lat       latencyHist
	window    latencyHist // since the last sample
	cause     func() string
}

func newLedger(cause func() string) *ledger {
	return &ledger{refused: map[int]bool{}, dups: map[string]int{}, cause: cause}
}

// sent reserves seqs [from, to) as handed to the producer.
func (l *ledger) sent(from, to int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.grow(to)
	for s := from; s < to; s++ {
		l.state[s] = seqInFlight
	}
}

// confirm records the producer's verdict on seqs [from, to).
func (l *ledger) confirm(from, to int, ok bool, bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := from; s < to; s++ {
		if ok {
			l.state[s] = seqProduced
		} else {
			l.state[s] = seqFailed
		}
	}
	if ok {
		l.produced += to - from
		l.prodBytes += bytes
	}
}

func (l *ledger) grow(n int) {
	for len(l.state) < n {
		l.state = append(l.state, 0)
		l.delivered = append(l.delivered, 0)
	}
}

// refuse notes a seq that the HEC stand-in refused: it must reach the DLQ.
func (l *ledger) refuse(seq int) {
	l.mu.Lock()
	l.refused[seq] = true
	l.mu.Unlock()
}

// Write takes the HEC stand-in's accepted events, one JSON line each.
func (l *ledger) Write(p []byte) (int, error) {
	now := time.Now()
	for _, line := range bytes.Split(p, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		seq, ok1 := fieldInt(line, `"seq":"`)
		sent, ok2 := fieldInt(line, `"sent_ms":"`)
		l.mu.Lock()
		if !ok1 || !ok2 || seq >= len(l.state) {
			l.foreign++
			l.mu.Unlock()
			continue
		}
		if l.delivered[seq] == 0 {
			l.unique++
			d := now.Sub(time.UnixMilli(int64(sent)))
			l.lat.add(d)
			l.window.add(d)
		} else {
			l.dups[l.cause()]++
		}
		if l.delivered[seq] < math.MaxUint16 {
			l.delivered[seq]++
		}
		l.mu.Unlock()
	}
	return len(p), nil
}

// fieldInt reads the digits of a string field that follows key.
func fieldInt(b []byte, key string) (int, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:j]))
	return n, err == nil && n >= 0
}

// outstanding counts produced seqs that are neither delivered nor refused
// (a refused one is owed to the DLQ, checked at the end).
func (l *ledger) outstanding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for s, st := range l.state {
		if st == seqProduced && l.delivered[s] == 0 && !l.refused[s] {
			n++
		}
	}
	return n
}

type ledgerSnapshot struct {
	produced, unique int
	p99              time.Duration // of the records delivered since the last snapshot
}

func (l *ledger) snapshot() ledgerSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := ledgerSnapshot{produced: l.produced, unique: l.unique, p99: l.window.quantile(0.99)}
	l.window = latencyHist{}
	return s
}

// latencyHist is a log-scale histogram: buckets 5 % wide from 1 ms.
type latencyHist struct {
	counts [400]int64
	n      int64
	max    time.Duration
}

func (h *latencyHist) add(d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	b := 0
	if ms > 1 {
		b = int(math.Log(ms) / math.Log(1.05))
	}
	b = min(max(b, 0), len(h.counts)-1)
	h.counts[b]++
	h.n++
	h.max = max(h.max, d)
}

func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for b, c := range h.counts {
		seen += c
		if seen >= want {
			return min(time.Duration(math.Pow(1.05, float64(b+1))*float64(time.Millisecond)), h.max)
		}
	}
	return h.max
}
