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
// parse go to out.bad and the rest of the object flows.
func parse(parser string, r io.Reader, maxRecord int, out records) error {
	switch parser {
	case "", "json":
		return parseJSONLines(r, maxRecord, out)
	case "json_array":
		return parseJSONArray(r, out)
	case "cloudtrail":
		return parseCloudTrail(r, out)
	case "csv":
		return parseCSV(r, out)
	case "text":
		return parseText(r, maxRecord, out)
	}
	return fmt.Errorf("unknown parser %q (want one of %v)", parser, Parsers)
}

// lineReader yields lines without their end, numbered from 1; a line
// longer than max is returned cut, with long set.
type lineReader struct {
	r    *bufio.Reader
	max  int
	n    int
	buf  []byte
	long bool
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

func (l *lineReader) next() ([]byte, error) {
	l.buf, l.long = l.buf[:0], false
	for {
		frag, err := l.r.ReadSlice('\n')
		if len(l.buf)+len(frag) <= l.max {
			l.buf = append(l.buf, frag...)
		} else {
			l.long = true
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (err != io.EOF || len(l.buf) == 0 && !l.long) {
			return nil, err
		}
		l.n++
		return bytes.TrimRight(l.buf, "\r\n"), nil
	}
}

// parseJSONLines reads JSON lines, several values on one line, and
// pretty-printed values over several lines. A line that cannot start or
// finish a value is bad on its own; the next line that holds a whole
// object starts afresh.
func parseJSONLines(r io.Reader, maxRecord int, out records) error {
	lines := newLineReader(r, maxRecord)
	var pending []byte
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
		pending = append(append(pending, '\n'), line...)
		if ok, err := emitValues(bytes.TrimSpace(pending), pendingLine, out); ok || err != nil {
			if err != nil {
				return err
			}
			pending, pendingLine = pending[:0], 0
			continue
		}
		if len(pending) > maxRecord {
			if err := flushBad(fmt.Sprintf("no valid JSON within max_record_bytes (%d)", maxRecord)); err != nil {
				return err
			}
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
func parseJSONArray(src io.Reader, out records) error {
	r := &errReader{r: src}
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '['); err != nil {
		return badRest(dec, r, err, out)
	}
	for dec.More() {
		where := fmt.Sprintf("byte %d", dec.InputOffset())
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return badRest(dec, r, err, out)
		}
		if err := emitObject(v, where, out); err != nil {
			return err
		}
	}
	return nil
}

// parseCloudTrail reads a CloudTrail file, {"Records": [...]}, and emits
// each element as {"Records": [element]}: the record stays what a Swarm
// cloudtrail schema policy reads (input.Records[_]), and each event is
// its own record for the DLQ and for replay.
func parseCloudTrail(src io.Reader, out records) error {
	r := &errReader{r: src}
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return badRest(dec, r, err, out)
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return badRest(dec, r, err, out)
		}
		if key != "Records" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return badRest(dec, r, err, out)
			}
			continue
		}
		if err := expectDelim(dec, '['); err != nil {
			return badRest(dec, r, fmt.Errorf("Records: %w", err), out)
		}
		for dec.More() {
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return badRest(dec, r, err, out)
			}
			rec := append(append([]byte(`{"Records":[`), bytes.TrimSpace(v)...), ']', '}')
			if err := out.record(rec); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return badRest(dec, r, err, out)
		}
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, found %v", want, tok)
	}
	return nil
}

// badRest sends what is left of an object that stopped parsing to the DLQ
// (bounded), or returns the read error that stopped it.
func badRest(dec *json.Decoder, r *errReader, cause error, out records) error {
	if r.err != nil {
		return r.err // the bytes did not arrive: read the object again
	}
	where := fmt.Sprintf("byte %d", dec.InputOffset())
	rest, _ := io.ReadAll(io.LimitReader(io.MultiReader(dec.Buffered(), r), 64<<10))
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
// header → string. A row that does not parse is bad on its own.
func parseCSV(r io.Reader, out records) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return out.bad("line 1", nil, "CSV header: "+err.Error())
	}
	header = append([]string(nil), header...)
	var rec []byte
	for {
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		var perr *csv.ParseError
		if errors.As(err, &perr) {
			if err := out.bad(fmt.Sprintf("line %d", perr.StartLine), []byte(joinRow(row)), "CSV: "+perr.Err.Error()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		rec = append(rec[:0], '{')
		for i, h := range header {
			if i > 0 {
				rec = append(rec, ',')
			}
			rec = jsonx.AppendString(rec, h)
			rec = append(rec, ':')
			rec = jsonx.AppendString(rec, row[i])
		}
		rec = append(rec, '}')
		if err := out.record(rec); err != nil {
			return err
		}
	}
}

func joinRow(row []string) string {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(row)
	w.Flush()
	return string(bytes.TrimRight(b.Bytes(), "\n"))
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
