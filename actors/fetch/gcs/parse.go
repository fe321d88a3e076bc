package gcs

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/jsonx"
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
	switch parser {
	case "", "json":
		return parseJSONLines(r, maxRecord, out)
	case "json_array":
		return parseJSONArray(r, maxRecord, out)
	case "cloudtrail":
		return parseCloudTrail(r, maxRecord, out)
	case "csv":
		return parseCSV(r, maxRecord, out)
	case "text":
		return parseText(r, maxRecord, out)
	}
	return fmt.Errorf("unknown parser %q (want one of %v)", parser, Parsers)
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

// nesting follows JSON's brackets and strings over the lines of a value,
// so that a value spread over many lines is checked once, when it can be
// whole, not once per line (which was quadratic in the value's size).
type nesting struct {
	depth            int
	inString, escape bool
	broken           bool // a closing bracket with nothing open
}

func (s *nesting) feed(b []byte) {
	for _, c := range b {
		switch {
		case s.inString:
			switch {
			case s.escape:
				s.escape = false
			case c == '\\':
				s.escape = true
			case c == '"':
				s.inString = false
			}
		case c == '"':
			s.inString = true
		case c == '{' || c == '[':
			s.depth++
		case c == '}' || c == ']':
			s.depth--
			s.broken = s.broken || s.depth < 0
		}
	}
}

// open says whether more lines could still complete the value: a string
// cannot go on over a line end in JSON, and a value whose brackets have
// closed is as whole as it will get.
func (s *nesting) open() bool { return s.depth > 0 && !s.inString && !s.broken }

// parseJSONLines reads JSON lines, several values on one line, and
// pretty-printed values over several lines. A line that cannot start or
// finish a value is bad on its own; the next line that holds a whole
// object starts afresh. Work is linear in the object's size.
func parseJSONLines(r io.Reader, maxRecord int, out records) error {
	lines := newLineReader(r, maxRecord)
	var pending []byte
	var nest nesting
	pendingLine := 0
	flushBad := func(reason string) error {
		err := out.bad(fmt.Sprintf("line %d", pendingLine), pending, reason)
		pending = pending[:0]
		pendingLine = 0
		return err
	}
	for {
		line, err := lines.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if lines.long {
			if pendingLine > 0 {
				if err := flushBad("not valid JSON"); err != nil {
					return err
				}
			}
			if err := out.bad(fmt.Sprintf("line %d", lines.n), line, fmt.Sprintf("longer than max_record_bytes (%d)", maxRecord)); err != nil {
				return err
			}
			continue
		}
		t := bytes.TrimSpace(line)
		if pendingLine == 0 {
			if len(t) == 0 {
				continue
			}
			if ok, err := emitValues(t, lines.n, out); ok || err != nil {
				if err != nil {
					return err
				}
				continue
			}
			pending, pendingLine = append(pending[:0], line...), lines.n
			nest = nesting{}
			nest.feed(line)
			if !nest.open() {
				if err := flushBad("not valid JSON"); err != nil {
					return err
				}
			}
			continue
		}
		// A line that is a whole object by itself means what was pending
		// was broken, not the start of a longer value.
		if len(t) > 0 && t[0] == '{' && json.Valid(t) {
			if err := flushBad("not valid JSON"); err != nil {
				return err
			}
			if _, err := emitValues(t, lines.n, out); err != nil {
				return err
			}
			continue
		}
		if len(pending)+1+len(line) > maxRecord {
			if err := flushBad(fmt.Sprintf("no valid JSON within max_record_bytes (%d)", maxRecord)); err != nil {
				return err
			}
			continue
		}
		pending = append(append(pending, '\n'), line...)
		nest.feed(line)
		if nest.open() {
			continue
		}
		if !nest.broken && !nest.inString {
			// The brackets closed: the value is whole now or never.
			ok, err := emitValues(bytes.TrimSpace(pending), pendingLine, out)
			if err != nil {
				return err
			}
			if ok {
				pending, pendingLine = pending[:0], 0
				continue
			}
		}
		if err := flushBad("not valid JSON"); err != nil {
			return err
		}
	}
	if pendingLine > 0 {
		return flushBad("not valid JSON")
	}
	return nil
}

// emitValues emits every JSON value in b when b is one or more whole
// values; false (and nothing emitted) when it is not.
func emitValues(b []byte, line int, out records) (bool, error) {
	if json.Valid(b) {
		return true, emitObject(b, fmt.Sprintf("line %d", line), out)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var vals []json.RawMessage
	for {
		var v json.RawMessage
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			return false, nil
		}
		vals = append(vals, v)
	}
	for _, v := range vals {
		if err := emitObject(v, fmt.Sprintf("line %d", line), out); err != nil {
			return true, err
		}
	}
	return true, nil
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
// maxRecord, is bad on its own.
func parseCSV(r io.Reader, maxRecord int, out records) error {
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
