package gcs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// slowReader serves b a few bytes at a time, so that a parser reads often,
// and fails the read once the deadline has passed: a parser that does
// quadratic work cannot run on for minutes.
type slowReader struct {
	b        []byte
	deadline time.Time
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	if time.Now().After(s.deadline) {
		return 0, errors.New("deadline passed while the object was being parsed")
	}
	n := copy(p[:min(len(p), 64)], s.b)
	s.b = s.b[n:]
	return n, nil
}

// A value spread over many short lines (a crafted object of a few KB
// gzipped) is parsed in time linear in its size: the lines gathered so far
// are not scanned again for every line.
func TestJSONLinesManyContinuationLinesIsLinear(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("{\"x\":[\n")
	for b.Len() < 512<<10 {
		b.WriteString("1,\n")
	}
	b.WriteString("1]}\n{\"after\":true}\n")
	start := time.Now()
	var c collected
	// Generous for a loaded 2-core box under -race; the quadratic parser
	// took about a minute for 128 KiB.
	err := parse("json", &slowReader{b: b.Bytes(), deadline: start.Add(5 * time.Second)}, 1<<20, &c)
	if err != nil {
		t.Fatalf("parse of %d KiB of continuation lines: %v (after %s)", b.Len()>>10, err, time.Since(start))
	}
	if len(c.recs) != 2 || !strings.HasPrefix(c.recs[0], `{"x":[1,1,`) || c.recs[1] != `{"after":true}` || len(c.bads) != 0 {
		t.Fatalf("%d records, bad: %q", len(c.recs), c.bads)
	}
	t.Logf("%d KiB in %s", b.Len()>>10, time.Since(start))
}

// endless serves prefix, then n bytes of fill, then suffix, without ever
// holding the fill. Once it has served more than limit bytes past the start
// of the fill and the parser has not yet refused the element, it fails:
// the parser was holding (or scanning for) the whole element.
type endless struct {
	prefix, suffix []byte
	fill           byte
	n, limit       int
	served         int
	refused        func() bool
}

func (e *endless) Read(p []byte) (int, error) {
	if e.served-len(e.prefix) > e.limit && !e.refused() {
		return 0, fmt.Errorf("read %d bytes of a long element without refusing it", e.served-len(e.prefix))
	}
	total := len(e.prefix) + e.n + len(e.suffix)
	if e.served >= total {
		return 0, io.EOF
	}
	p = p[:min(len(p), total-e.served, 32<<10)]
	for i := range p {
		switch pos := e.served + i; {
		case pos < len(e.prefix):
			p[i] = e.prefix[pos]
		case pos < len(e.prefix)+e.n:
			p[i] = e.fill
		default:
			p[i] = e.suffix[pos-len(e.prefix)-e.n]
		}
	}
	e.served += len(p)
	return len(p), nil
}

func TestEveryParserRefusesALongElementWithoutHoldingIt(t *testing.T) {
	const max = 64 << 10
	for _, tc := range []struct {
		parser, prefix, suffix, want string
		skipped                      bool // not a record: read past, neither kept nor refused
	}{
		{"json", `{"a":"`, "\"}\n{\"ok\":1}\n", `{"ok":1}`, false},
		{"text", "", "\nok\n", `{"text":"ok"}`, false},
		{"json_array", `[{"a":"`, `"},{"ok":1}]`, `{"ok":1}`, false},
		{"cloudtrail", `{"Records":[{"a":"`, `"},{"ok":1}]}`, `{"Records":[{"ok":1}]}`, false},
		{"cloudtrail", `{"Other":"`, `","Records":[{"ok":1}]}`, `{"Records":[{"ok":1}]}`, true},
		{"csv", "h\n\"", "\"\nok\n", `{"h":"ok"}`, false},
	} {
		t.Run(tc.parser, func(t *testing.T) {
			var c collected
			src := &endless{prefix: []byte(tc.prefix), suffix: []byte(tc.suffix), fill: 'x', n: 16 << 20, limit: max + 256<<10,
				refused: func() bool { return tc.skipped || len(c.bads) > 0 }}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if err := parse(tc.parser, src, max, &c); err != nil {
				t.Fatalf("parse: %v", err)
			}
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
				t.Fatalf("parsing past an element of %d MiB allocated %d MiB", src.n>>20, alloc>>20)
			}
			if tc.skipped {
				if len(c.bads) != 0 {
					t.Fatalf("bad: %.200q", c.bads)
				}
			} else if len(c.bads) != 1 || !strings.Contains(c.reasons[0], "max_record_bytes") || len(c.bads[0]) > 2*max {
				t.Fatalf("want one bad entry naming max_record_bytes; bad %d: %.200q, reasons %q", len(c.bads), c.bads, c.reasons)
			}
			if len(c.recs) != 1 || c.recs[0] != tc.want {
				t.Fatalf("records after the long element: %.200q, want %s", c.recs, tc.want)
			}
		})
	}
}
