package gcs

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/sluicehq/sluice/internal/jsonx"
)

// records receives what a parser reads: good records in order, and the
// ones that do not parse, with where they are and why.
type records interface {
	record(rec []byte) error
	bad(where string, raw []byte, reason string) error
}

// parse reads r with the named parser. It returns an error only when
// reading failed (the object must be read again); records that do not
// parse go to out.bad and the rest of the object flows. Every parser holds
// at most maxRecord bytes of one element: a longer one is refused as soon
// as it passes maxRecord, and read past without being kept.
func parse(parser string, r io.Reader, maxRecord int, out records) error {
	return parseWith(parser, r, parseOptions{maxRecord: maxRecord}, out)
}

// parseOptions are the source's choices on how to read.
type parseOptions struct {
	maxRecord     int
	csvDuplicates string // a header repeated: "suffix" (or "") or "refuse"
}

// objectRefused: the object is not read as configured; it goes to the DLQ
// as its notification, with the reason.
type objectRefused struct{ reason string }

func (e *objectRefused) Error() string { return e.reason }

// parseWith is parse with every option; an *objectRefused error means
// nothing of the object was emitted.
func parseWith(parser string, r io.Reader, o parseOptions, out records) error {
	maxRecord := o.maxRecord
	r = skipBOM(r)
	switch parser {
	case "", "json":
		return parseJSONLines(r, maxRecord, out)
	case "json_array":
		return parseJSONArray(r, maxRecord, out)
	case "cloudtrail":
		return parseCloudTrail(r, maxRecord, out)
	case "csv":
		return parseCSV(r, maxRecord, o.csvDuplicates, out)
	case "text":
		return parseText(r, maxRecord, out)
	}
	return fmt.Errorf("unknown parser %q (want one of %v)", parser, Parsers)
}

// skipBOM reads past a leading UTF-8 byte-order mark (Windows tools and
// Excel's "CSV UTF-8" write one): it would be part of the first record —
// a JSON line that does not parse, a CSV header "\ufeffname".
func skipBOM(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, _ := br.Peek(3); bytes.Equal(b, []byte{0xef, 0xbb, 0xbf}) {
		_, _ = br.Discard(3)
	}
	return br
}

// lineReader yields lines without their end, numbered from 1. A line
// longer than max is returned as soon as it passes max, cut there, with
// long set; the rest of it is skipped by the next call.
type lineReader struct {
	r    *bufio.Reader
	max  int
	n    int
	buf  []byte
	long bool
	skip bool // the rest of the last (long) line is still to be read past
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

func (l *lineReader) next() ([]byte, error) {
	l.buf, l.long = l.buf[:0], false
	for l.skip {
		_, err := l.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		l.skip = false
	}
	for {
		frag, err := l.r.ReadSlice('\n')
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if len(l.buf)+len(frag) > l.max {
			l.buf = append(l.buf, frag[:l.max-len(l.buf)]...)
			l.long, l.skip = true, errors.Is(err, bufio.ErrBufferFull)
			l.n++
			return l.buf, nil
		}
		l.buf = append(l.buf, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(l.buf) == 0 {
			return nil, err
		}
		l.n++
		return bytes.TrimRight(l.buf, "\r\n"), nil
	}
}

// parseJSONLines reads JSON lines, several values on one line, and values
// pretty-printed over several lines. It follows JSON's grammar byte by
// byte (jsonScan), so a record ends only where its top-level object
// closes, whatever its nested lines look like ({} or a one-line object on
// a line of its own, as jq and Python's json.dumps(indent=2) print them).
// A broken value ends at the first byte that cannot continue it, or at a
// line that opens an object at its first byte (pretty-printers indent
// what is nested; one that does not, such as Go's json.MarshalIndent with
// an empty indent, is not read as one value); when that is on a later
// line, the line is read again afresh, once, so a whole record after a
// truncated line flows and work stays linear.
// What cannot be read goes to the DLQ, the pieces of one broken stretch
// together, up to max_record_bytes an entry.
func parseJSONLines(r io.Reader, maxRecord int, out records) error {
	lines := newLineReader(r, maxRecord)
	p := &jsonReader{out: out, max: maxRecord}
	for {
		line, err := lines.next()
		if err == io.EOF {
			return p.end()
		}
		if err != nil {
			return err
		}
		if lines.long {
			err = p.longLine(lines.n, line)
		} else {
			err = p.line(lines.n, line)
		}
		if err != nil {
			return err
		}
	}
}

// jsonReader holds what parseJSONLines carries from one line to the next.
type jsonReader struct {
	out  records
	max  int
	scan jsonScan

	val     []byte // the value being read: its bytes on the lines before this one
	valLine int    // the line it starts on; 0: between values
	long    bool   // it passed max and was refused: the rest is read past

	junk     []byte // a stretch that is not a valid object, not yet in the DLQ
	junkLine int
	junkWhy  string
}

func (p *jsonReader) line(n int, b []byte) error {
	if p.valLine > 0 && len(b) > 0 && b[0] == '{' {
		// Pretty-printers indent what is nested: a line that opens an
		// object at its first byte is the next record, and the open value
		// was cut short (a line truncated after "key": or in an array).
		if err := p.dropOpen(); err != nil {
			return err
		}
		p.valLine = 0
	}
	if t := bytes.TrimSpace(b); p.valLine == 0 && len(t) > 0 && t[0] == '{' && json.Valid(t) {
		// One whole object on a line, JSON lines' common case: checked once.
		if err := p.flushJunk(); err != nil {
			return err
		}
		return emitObject(t, fmt.Sprintf("line %d", n), p.out)
	}
	start, err := p.scanLine(n, b)
	if err != nil || p.valLine == 0 || p.long {
		return err
	}
	return p.keepOpen(b[start:])
}

// dropOpen sends the value left open on earlier lines to the DLQ, unless
// it was refused as too long already.
func (p *jsonReader) dropOpen() error {
	if p.long {
		return nil
	}
	return p.addJunk(p.valLine, p.val, "not valid JSON")
}

// scanLine follows line n byte by byte, passing on each value that closes
// on it and sending what cannot be read to the DLQ. A value still open at
// the line's end is left with p.valLine set; start is where on the line
// its bytes begin.
func (p *jsonReader) scanLine(n int, b []byte) (start int, err error) {
	for i := 0; i <= len(b); i++ {
		c := byte('\n') // the line's end: ends a number, cannot be in a string
		if i < len(b) {
			c = b[i]
		}
		if p.valLine == 0 {
			if isSpace(c) {
				continue
			}
			if c != '{' && c != '[' {
				if len(bytes.TrimSpace(b[:i])) == 0 {
					i = 0 // the whole line, as it was indented
				}
				return 0, p.addJunk(n, b[i:], "not a JSON object")
			}
			if err := p.flushJunk(); err != nil {
				return 0, err
			}
			p.valLine, p.long, start = n, false, i
			p.val = p.val[:0]
			p.scan.reset()
		}
		if !p.scan.step(c) {
			if p.valLine < n {
				// The value was broken on an earlier line; this one
				// starts afresh (once: a value now starts on it).
				if err := p.dropOpen(); err != nil {
					return 0, err
				}
				p.valLine, start, i = 0, 0, -1
				continue
			}
			p.valLine = 0
			return 0, p.addJunk(n, b[start:], "not valid JSON")
		}
		if p.scan.done() { // only a closing bracket ends a value: i < len(b)
			line, long := p.valLine, p.long
			p.valLine = 0
			if long {
				continue
			}
			v := b[start : i+1]
			if len(p.val) > 0 {
				v = append(append(p.val, '\n'), v...)
			}
			if err := p.emit(line, v); err != nil {
				return 0, err
			}
		}
	}
	return start, nil
}

// keepOpen keeps part, this line's bytes of the value still open, within
// max.
func (p *jsonReader) keepOpen(part []byte) error {
	if len(p.val)+1+len(part) > p.max {
		p.long = true
		v := append(append(p.val, '\n'), part...)
		return p.out.bad(fmt.Sprintf("line %d", p.valLine), v[:p.max], fmt.Sprintf("longer than max_record_bytes (%d)", p.max))
	}
	if len(p.val) > 0 {
		p.val = append(p.val, '\n')
	}
	p.val = append(p.val, part...)
	return nil
}

// emit passes on a value whose brackets closed, when it is valid JSON
// (jsonScan does not check numbers, literals or escapes).
func (p *jsonReader) emit(line int, v []byte) error {
	if !json.Valid(v) {
		return p.addJunk(line, v, "not valid JSON")
	}
	if err := p.flushJunk(); err != nil {
		return err
	}
	return emitObject(v, fmt.Sprintf("line %d", line), p.out)
}

// longLine takes a line longer than max, of which b is the first max
// bytes; the rest of it is not read, so what follows starts afresh.
func (p *jsonReader) longLine(n int, b []byte) error {
	if err := p.flushJunk(); err != nil {
		return err
	}
	line, long := p.valLine, p.long
	p.valLine = 0
	switch {
	case line == 0:
		line, long = n, false
		p.val = p.val[:0]
	case long:
		return nil // refused already
	}
	v := b
	if len(p.val) > 0 {
		v = append(append(p.val, '\n'), b...)[:p.max]
	}
	return p.out.bad(fmt.Sprintf("line %d", line), v, fmt.Sprintf("longer than max_record_bytes (%d)", p.max))
}

// end sends what is left at the end of the object to the DLQ.
func (p *jsonReader) end() error {
	if p.valLine > 0 && !p.long {
		if err := p.addJunk(p.valLine, p.val, "not valid JSON: the object ends inside it"); err != nil {
			return err
		}
	}
	p.valLine = 0
	return p.flushJunk()
}

// addJunk adds b to the broken stretch being gathered for the DLQ.
func (p *jsonReader) addJunk(line int, b []byte, why string) error {
	if len(p.junk) > 0 && len(p.junk)+1+len(b) > p.max {
		if err := p.flushJunk(); err != nil {
			return err
		}
	}
	if len(p.junk) == 0 {
		p.junkLine, p.junkWhy = line, why
	} else {
		p.junk = append(p.junk, '\n')
	}
	p.junk = append(p.junk, b[:min(len(b), p.max)]...)
	return nil
}

func (p *jsonReader) flushJunk() error {
	if len(p.junk) == 0 {
		return nil
	}
	err := p.out.bad(fmt.Sprintf("line %d", p.junkLine), p.junk, p.junkWhy)
	p.junk = p.junk[:0]
	return err
}

// jsonScan follows JSON's grammar over a value, one byte at a time:
// brackets, strings, and what may come next. It finds where a value
// closes and the first byte that cannot continue it; it does not check
// inside numbers, literals and escapes (json.Valid does, once the value
// closed).
type jsonScan struct {
	stack                  []byte // open brackets, '{' or '['
	want                   expect
	inStr, esc, key, inLit bool
}

type expect uint8

const (
	wantValue        expect = iota // after ':', after ',' in an array, at the start
	wantValueOrClose               // after '['
	wantKeyOrClose                 // after '{'
	wantKey                        // after ',' in an object
	wantColon                      // after a key
	wantCommaOrClose               // after a value in an array or object
	wantNothing                    // the value closed
)

// maxNesting is encoding/json's own bound: json.Valid refuses deeper.
const maxNesting = 10000

func (s *jsonScan) reset() {
	s.stack, s.want = s.stack[:0], wantValue
	s.inStr, s.esc, s.key, s.inLit = false, false, false, false
}

func (s *jsonScan) done() bool { return s.want == wantNothing }

// step takes the next byte; false when it cannot continue the value.
func (s *jsonScan) step(c byte) bool {
	if s.inStr {
		switch {
		case s.esc:
			s.esc = false
		case c == '\\':
			s.esc = true
		case c == '"':
			s.inStr = false
			if s.key {
				s.key, s.want = false, wantColon
			} else {
				s.afterValue()
			}
		case c < 0x20:
			return false // a line end or other control byte inside a string
		}
		return true
	}
	if s.inLit {
		if isLiteral(c) {
			return true
		}
		s.inLit = false
		s.afterValue()
	}
	if isSpace(c) {
		return true
	}
	switch s.want {
	case wantValue, wantValueOrClose:
		if c == ']' && s.want == wantValueOrClose {
			return s.close(c)
		}
		return s.open(c)
	case wantKeyOrClose, wantKey:
		if c == '}' && s.want == wantKeyOrClose {
			return s.close(c)
		}
		s.inStr, s.key = true, true
		return c == '"'
	case wantColon:
		s.want = wantValue
		return c == ':'
	case wantCommaOrClose:
		if c != ',' {
			return s.close(c)
		}
		if s.stack[len(s.stack)-1] == '{' {
			s.want = wantKey
		} else {
			s.want = wantValue
		}
		return true
	}
	return false
}

func (s *jsonScan) open(c byte) bool {
	switch {
	case c == '{' || c == '[':
		if len(s.stack) >= maxNesting {
			return false
		}
		s.stack = append(s.stack, c)
		s.want = wantValueOrClose
		if c == '{' {
			s.want = wantKeyOrClose
		}
	case c == '"':
		s.inStr = true
	case isLiteral(c):
		s.inLit = true
	default:
		return false
	}
	return true
}

func (s *jsonScan) close(c byte) bool {
	n := len(s.stack)
	if n == 0 || !(c == '}' && s.stack[n-1] == '{' || c == ']' && s.stack[n-1] == '[') {
		return false
	}
	s.stack = s.stack[:n-1]
	s.afterValue()
	return true
}

func (s *jsonScan) afterValue() {
	s.want = wantCommaOrClose
	if len(s.stack) == 0 {
		s.want = wantNothing
	}
}

// isLiteral: a byte of a number, true, false or null.
func isLiteral(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// emitObject passes a JSON object on, compacted when it spans lines; any
// other JSON value is a bad record.
func emitObject(v []byte, where string, out records) error {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '{' {
		return out.bad(where, v, "not a JSON object")
	}
	if bytes.IndexByte(v, '\n') >= 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, v); err == nil {
			v = c.Bytes()
		}
	}
	return out.record(v)
}

// parseJSONArray reads one JSON array of objects. A syntax error ends the
// array: what came before flows, the rest goes to the DLQ as one entry.
func parseJSONArray(src io.Reader, maxRecord int, out records) error {
	v := newValueReader(src, maxRecord)
	c, err := v.next()
	if err != nil || c != '[' {
		return v.badRest(nil, want(c, err, "["), out)
	}
	return v.elements(out, func(raw []byte, where string) error { return emitObject(raw, where, out) })
}

// parseCloudTrail reads a CloudTrail file, {"Records": [...]}, and emits
// each element as {"Records": [element]}: the record stays what a Swarm
// cloudtrail schema policy reads (input.Records[_]), and each event is
// its own record for the DLQ and for replay.
func parseCloudTrail(src io.Reader, maxRecord int, out records) error {
	v := newValueReader(src, maxRecord)
	c, err := v.next()
	if err != nil || c != '{' {
		return v.badRest(nil, want(c, err, "{"), out)
	}
	for i := 0; ; i++ {
		c, err := v.next()
		if err == nil && c == '}' {
			return nil
		}
		if err == nil && i > 0 {
			if c != ',' {
				return v.badRest([]byte{c}, want(c, err, ", or }"), out)
			}
			c, err = v.next()
		}
		if err != nil || c != '"' {
			return v.badRest(nil, want(c, err, "a key"), out)
		}
		raw, long, err := v.value(c)
		var key string
		if err != nil || long || json.Unmarshal(raw, &key) != nil {
			return v.badRest(raw, want(c, err, "a key shorter than max_record_bytes"), out)
		}
		if c, err = v.next(); err != nil || c != ':' {
			return v.badRest(nil, want(c, err, ":"), out)
		}
		c, err = v.next()
		if err != nil {
			return v.badRest(nil, err, out)
		}
		if key != "Records" {
			if err := v.skip(c); err != nil {
				return v.badRest(nil, err, out)
			}
			continue
		}
		if c != '[' {
			return v.badRest([]byte{c}, fmt.Errorf("Records: %w", want(c, nil, "[")), out)
		}
		err = v.elements(out, func(raw []byte, _ string) error {
			return out.record(append(append([]byte(`{"Records":[`), raw...), ']', '}'))
		})
		if err != nil || v.stopped {
			return err
		}
	}
}

func want(c byte, err error, what string) error {
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("want %s: %w", what, err)
	}
	return fmt.Errorf("want %s, found %q", what, c)
}

// valueReader reads a JSON text one value at a time, keeping at most max
// bytes of a value: a longer one is refused as soon as it passes max and
// the rest of it is read past. It only follows brackets and strings; each
// value it returns is checked with json.Valid, once.
type valueReader struct {
	r       *bufio.Reader
	err     error // a read error other than EOF: the object must be read again
	off     int64 // bytes read
	max     int
	buf     []byte
	stopped bool // a syntax error sent the rest of the object to the DLQ

	// the value being read
	depth                    int
	inString, escape, scalar bool
}

func newValueReader(r io.Reader, max int) *valueReader {
	return &valueReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

func (v *valueReader) readByte() (byte, error) {
	c, err := v.r.ReadByte()
	if err != nil {
		if err != io.EOF {
			v.err = err
		}
		return 0, err
	}
	v.off++
	return c, nil
}

// next reads the next byte that is not white space.
func (v *valueReader) next() (byte, error) {
	for {
		c, err := v.readByte()
		if err != nil || !isSpace(c) {
			return c, err
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (v *valueReader) start(c byte) {
	v.depth, v.inString, v.escape, v.scalar = 0, false, false, false
	switch c {
	case '{', '[':
		v.depth = 1
	case '"':
		v.inString = true
	default:
		v.scalar = true
	}
}

// value reads the value that begins with c (already read). long means it
// passed max: raw is its first max bytes, and skipRest reads past the rest.
func (v *valueReader) value(c byte) (raw []byte, long bool, err error) {
	v.start(c)
	v.buf = append(v.buf[:0], c)
	long, err = v.scan(true)
	return v.buf, long, err
}

// skip reads past the value that begins with c, keeping nothing.
func (v *valueReader) skip(c byte) error {
	v.start(c)
	_, err := v.scan(false)
	return err
}

func (v *valueReader) skipRest() error {
	_, err := v.scan(false)
	return err
}

// scan reads on to the end of the value; with keep, it appends to buf
// and stops (long) once buf passes max.
func (v *valueReader) scan(keep bool) (bool, error) {
	for v.depth > 0 || v.inString || v.scalar {
		c, err := v.readByte()
		if err != nil {
			if err == io.EOF && v.scalar {
				v.scalar = false // a number or literal may end the text
				return false, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return false, err
		}
		switch {
		case v.scalar:
			if c == ',' || c == ']' || c == '}' || c == ':' || isSpace(c) {
				_ = v.r.UnreadByte()
				v.off--
				v.scalar = false
				return false, nil
			}
		case v.inString:
			switch {
			case v.escape:
				v.escape = false
			case c == '\\':
				v.escape = true
			case c == '"':
				v.inString = false
			}
		case c == '"':
			v.inString = true
		case c == '{' || c == '[':
			v.depth++
		case c == '}' || c == ']':
			v.depth--
		}
		if keep {
			v.buf = append(v.buf, c)
			if len(v.buf) > v.max {
				v.buf = v.buf[:v.max]
				return true, nil
			}
		}
	}
	return false, nil
}

// elements reads the elements of an array whose '[' was read, up to and
// with its ']'. A long element is refused and skipped; one that is not
// valid JSON sends the rest of the object to the DLQ (v.stopped).
func (v *valueReader) elements(out records, emit func(raw []byte, where string) error) error {
	for i := 0; ; i++ {
		c, err := v.next()
		if err == nil && c == ']' {
			return nil
		}
		if err == nil && i > 0 {
			if c != ',' {
				return v.badRest([]byte{c}, want(c, err, ", or ]"), out)
			}
			c, err = v.next()
		}
		if err != nil {
			return v.badRest(nil, want(c, err, "an element"), out)
		}
		where := fmt.Sprintf("byte %d", v.off-1)
		raw, long, err := v.value(c)
		if err != nil {
			return v.badRest(raw, err, out)
		}
		if long {
			if err := out.bad(where, raw, fmt.Sprintf("element longer than max_record_bytes (%d)", v.max)); err != nil {
				return err
			}
			if err := v.skipRest(); err != nil {
				return v.badRest(nil, err, out)
			}
			continue
		}
		if !json.Valid(raw) {
			return v.badRest(raw, errors.New("not valid JSON"), out)
		}
		if err := emit(raw, where); err != nil {
			return err
		}
	}
}

// badRest sends what is left of an object that stopped parsing to the DLQ
// (bounded), led by what was read of the value that stopped it, or returns
// the read error that stopped it.
func (v *valueReader) badRest(read []byte, cause error, out records) error {
	if v.err != nil {
		return v.err // the bytes did not arrive: read the object again
	}
	v.stopped = true
	where := fmt.Sprintf("byte %d", v.off-int64(len(read)))
	rest := append([]byte(nil), read...)
	more, _ := io.ReadAll(io.LimitReader(v.r, 64<<10))
	if v.err != nil {
		return v.err
	}
	rest = append(rest, more...)
	return out.bad(where, rest, "the rest of the object is not valid JSON: "+cause.Error())
}

// errReader remembers a read error other than EOF, to tell a broken file
// from a broken connection.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// parseCSV reads CSV with a header line; each row becomes an object of
// header → string. A row that does not parse, or is longer than
// maxRecord, is bad on its own. A header repeated is renamed (dups
// "suffix") or refuses the object (dups "refuse").
func parseCSV(r io.Reader, maxRecord int, dups string, out records) error {
	rows := &csvRows{r: bufio.NewReaderSize(r, 64<<10), max: maxRecord}
	feed := &rowFeed{}
	newReader := func(fields int) *csv.Reader {
		cr := csv.NewReader(feed)
		cr.ReuseRecord = true
		cr.FieldsPerRecord = fields
		return cr
	}
	cr := newReader(0)
	var header []string
	var rec []byte
	for {
		row, line, long, err := rows.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		where := fmt.Sprintf("line %d", line)
		if long {
			if err := out.bad(where, row, fmt.Sprintf("row longer than max_record_bytes (%d)", maxRecord)); err != nil {
				return err
			}
			if header == nil {
				return nil // no header: nothing after it can be read
			}
			continue
		}
		feed.row = row
		fields, err := cr.Read()
		feed.row = nil
		if err == io.EOF {
			continue // an empty line
		}
		if err != nil {
			// Start afresh: a row that failed may have left bytes behind.
			cr = newReader(len(header))
			msg := err.Error()
			var perr *csv.ParseError
			if errors.As(err, &perr) {
				msg = perr.Err.Error()
			}
			if header == nil {
				return out.bad("line 1", nil, "CSV header: "+msg)
			}
			if err := out.bad(where, bytes.TrimRight(row, "\r\n"), "CSV: "+msg); err != nil {
				return err
			}
			continue
		}
		if header == nil {
			header = append([]string(nil), fields...)
			if err := uniqueHeader(header, dups); err != nil {
				return err
			}
			continue
		}
		rec = append(rec[:0], '{')
		for i, h := range header {
			if i > 0 {
				rec = append(rec, ',')
			}
			rec = jsonx.AppendString(rec, h)
			rec = append(rec, ':')
			rec = jsonx.AppendString(rec, fields[i])
		}
		rec = append(rec, '}')
		if err := out.record(rec); err != nil {
			return err
		}
	}
}

// uniqueHeader renames each repeat of a header name in place, name_2,
// name_3, … (a suffix no other header has), so no column's value is lost
// to a later one of the same name; with dups "refuse" a repeat refuses
// the object instead.
func uniqueHeader(header []string, dups string) error {
	used := make(map[string]bool, len(header))
	for _, h := range header {
		used[h] = true
	}
	seen := make(map[string]int, len(header))
	for i, h := range header {
		seen[h]++
		if seen[h] == 1 {
			continue
		}
		if dups == "refuse" {
			return &objectRefused{fmt.Sprintf("CSV header, line 1: column %d repeats %q (csv_duplicate_headers: refuse); not read", i+1, h)}
		}
		n := seen[h]
		for used[h+"_"+strconv.Itoa(n)] {
			n++
		}
		header[i] = h + "_" + strconv.Itoa(n)
		used[header[i]] = true
	}
	return nil
}

// csvRows cuts CSV into rows, each up to a line end outside quotes (a
// quoted field may hold line ends), keeping at most max bytes of a row.
type csvRows struct {
	r      *bufio.Reader
	max    int
	line   int // lines read
	buf    []byte
	skip   bool // the rest of a long row is still to be read past
	quoted bool
}

// next returns the next row with its line end and the line it starts on;
// long: it passed max, row is its first max bytes, and the next call
// reads past the rest of it.
func (c *csvRows) next() (row []byte, line int, long bool, err error) {
	for c.skip {
		if _, _, err := c.frag(); err != nil && err != io.EOF {
			return nil, 0, false, err
		} else if err == io.EOF {
			c.skip = false
		}
	}
	c.buf, c.quoted = c.buf[:0], false
	line = c.line + 1
	for {
		frag, end, err := c.frag()
		if err != nil && err != io.EOF {
			return nil, 0, false, err
		}
		if len(c.buf)+len(frag) > c.max {
			c.buf = append(c.buf, frag[:c.max-len(c.buf)]...)
			c.skip = !end && err == nil
			return c.buf, line, true, nil
		}
		c.buf = append(c.buf, frag...)
		if end || err == io.EOF {
			if len(c.buf) == 0 {
				return nil, 0, false, io.EOF
			}
			return c.buf, line, false, nil
		}
	}
}

// frag reads on to the next line end (or as much as the buffer holds);
// end: that line end closed the row.
func (c *csvRows) frag() ([]byte, bool, error) {
	frag, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		err = nil
	}
	if bytes.Count(frag, []byte{'"'})%2 == 1 {
		c.quoted = !c.quoted
	}
	end := len(frag) > 0 && frag[len(frag)-1] == '\n'
	if end {
		c.line++
	}
	if end && !c.quoted {
		c.skip = false
		return frag, true, err
	}
	return frag, false, err
}

// rowFeed gives csv.Reader one row, then EOF (csv.Reader reads on from
// its source after an EOF, so the next row follows).
type rowFeed struct{ row []byte }

func (f *rowFeed) Read(p []byte) (int, error) {
	if len(f.row) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.row)
	f.row = f.row[n:]
	return n, nil
}

// parseText makes each non-empty line a record {"text": line}.
func parseText(r io.Reader, maxRecord int, out records) error {
	lines := newLineReader(r, maxRecord)
	var rec []byte
	for {
		line, err := lines.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if lines.long {
			if err := out.bad(fmt.Sprintf("line %d", lines.n), line, fmt.Sprintf("longer than max_record_bytes (%d)", maxRecord)); err != nil {
				return err
			}
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rec = jsonx.AppendString(append(rec[:0], `{"text":`...), string(line))
		rec = append(rec, '}')
		if err := out.record(rec); err != nil {
			return err
		}
	}
}
