package main

import (
	"bytes"
	"math"
	"strconv"
	"sync"
	"time"
)

// A chaos run's books: every record the writer produced carries a unique
// "seq" and its send time ("sent_ms"); the ledger learns from each HEC
// stand-in which seqs that Splunk accepted, how often and how late. Each
// sink the records are owed to keeps its own book (a second source on the
// same logstore sends every record to a second sink too).

const (
	seqUnsent   = 0
	seqInFlight = 1 // handed to the SDK producer, not yet confirmed by SLS
	seqProduced = 2 // SLS confirmed it: it must arrive
	seqFailed   = 3 // the producer gave up: SLS never stored it
)

type ledger struct {
	mu        sync.Mutex
	start     time.Time
	state     []uint8  // by seq
	sentAt    []uint32 // by seq: milliseconds after start when handed to the producer
	shard     []int8   // by seq: the SLS shard written to, -1 when SLS chose
	refused   map[int]bool
	produced  int
	prodBytes int64
	books     []*book
	lat       latencyHist // of the first book
	window    latencyHist // since the last sample
	cause     func() int  // the fault a duplicate is blamed on: its index in the schedule, or -1
}

// book is what one sink owes: every produced seq, delivered or in the DLQ.
type book struct {
	l        *ledger
	name     string      // the sink
	origins  []string    // DLQ origin subjects whose records it owes
	refuses  bool        // the refuse fault applies to its stand-in
	accepted int         // events accepted, copies included
	unique   int         // seqs delivered at least once
	foreign  int         // accepted events with no seq of ours
	dups     map[int]int // by the fault blamed, an index in the schedule or -1
	// delivered counts the times Splunk accepted each seq (saturating).
	delivered []uint16
	// arrived is when Splunk first accepted each seq, in milliseconds
	// after the start (0: not yet).
	arrived []uint32
}

func newLedger(cause func() int) *ledger {
	return &ledger{refused: map[int]bool{}, cause: cause}
}

// book adds a sink the records are owed to; the first one's latency is
// the run's.
func (l *ledger) book(name string, origins ...string) *book {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &book{l: l, name: name, origins: origins, dups: map[int]int{}, delivered: make([]uint16, len(l.state)), arrived: make([]uint32, len(l.state))}
	l.books = append(l.books, b)
	return b
}

// owe adds a DLQ origin subject whose records b owes (a renamed sink's).
func (b *book) owe(origin string) {
	b.l.mu.Lock()
	b.origins = append(b.origins, origin)
	b.l.mu.Unlock()
}

// sent reserves seqs [from, to) as handed to the producer for shard
// (-1: SLS picks one).
func (l *ledger) sent(from, to, shard int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.grow(to)
	at := uint32(time.Since(l.start).Milliseconds())
	for s := from; s < to; s++ {
		l.state[s] = seqInFlight
		l.sentAt[s] = at
		l.shard[s] = int8(shard)
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
		l.sentAt = append(l.sentAt, 0)
		l.shard = append(l.shard, -1)
		for _, b := range l.books {
			b.delivered = append(b.delivered, 0)
			b.arrived = append(b.arrived, 0)
		}
	}
}

// refuse notes a seq that the HEC stand-in refused: it must reach the DLQ.
func (l *ledger) refuse(seq int) {
	l.mu.Lock()
	l.refused[seq] = true
	l.mu.Unlock()
}

// Write takes a HEC stand-in's accepted events, one JSON line each.
func (b *book) Write(p []byte) (int, error) {
	now := time.Now()
	l := b.l
	for _, line := range bytes.Split(p, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		seq, ok1 := fieldInt(line, `"seq":"`)
		sent, ok2 := fieldInt(line, `"sent_ms":"`)
		l.mu.Lock()
		b.accepted++
		if !ok1 || !ok2 || seq >= len(l.state) {
			b.foreign++
			l.mu.Unlock()
			continue
		}
		if b.delivered[seq] == 0 {
			b.unique++
			b.arrived[seq] = uint32(max(1, now.Sub(l.start).Milliseconds()))
			if b == l.books[0] {
				d := now.Sub(time.UnixMilli(int64(sent)))
				l.lat.add(d)
				l.window.add(d)
			}
		} else {
			b.dups[l.cause()]++
		}
		if b.delivered[seq] < math.MaxUint16 {
			b.delivered[seq]++
		}
		l.mu.Unlock()
	}
	return len(p), nil
}

// accepts is how many events b's stand-in accepted so far, copies included.
func (b *book) accepts() int {
	b.l.mu.Lock()
	defer b.l.mu.Unlock()
	return b.accepted
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

// outstanding counts produced seqs that some sink has neither delivered
// nor refused (a refused one is owed to the DLQ, checked at the end), nor
// has in dead (the DLQ as last read, by origin subject).
func (l *ledger) outstanding(dead map[string]map[int]bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for s, st := range l.state {
		if st != seqProduced {
			continue
		}
		for _, b := range l.books {
			if b.delivered[s] == 0 && !(b.refuses && l.refused[s]) && !b.inDLQ(dead, s) {
				n++
				break
			}
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
	s := ledgerSnapshot{produced: l.produced, unique: l.books[0].unique, p99: l.window.quantile(0.99)}
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
