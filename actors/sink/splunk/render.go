package splunk

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/jsonx"
)

// output is the part of an OUT record (batch.Output) an event needs, read
// without decoding: data and fields stay the bytes the policy engine wrote.
type output struct {
	id, index, sourcetype, source, host string
	timestamp                           float64
	data, fields                        []byte
}

// parseOutput reads an OUT record. The record is validated first (fast,
// no allocation), so what goes into the event is JSON; then its fields are
// sliced out instead of decoded: an encoding/json decode of every record
// was a third of the sink's CPU.
func parseOutput(record []byte) (output, error) {
	var o output
	if err := fastjson.ValidateBytes(record); err != nil {
		return o, err
	}
	err := jsonx.Fields(record, func(key, v []byte) error {
		var err error
		switch string(key) {
		case "id":
			o.id, err = str(v)
		case "timestamp":
			o.timestamp, err = strconv.ParseFloat(string(v), 64)
		case "data":
			o.data = v
		case "fields":
			o.fields = v
		case "index":
			o.index, err = str(v)
		case "sourcetype":
			o.sourcetype, err = str(v)
		case "source":
			o.source, err = str(v)
		case "host":
			o.host, err = str(v)
		}
		if err != nil {
			return fmt.Errorf("field %s: %w", key, err)
		}
		return nil
	})
	return o, err
}

// str reads a string field; null reads as empty, as encoding/json does.
func str(v []byte) (string, error) {
	if string(v) == "null" {
		return "", nil
	}
	if len(v) == 0 || v[0] != '"' {
		return "", fmt.Errorf("want a string, got %s", v)
	}
	return jsonx.Unquote(v)
}

// render appends one HEC event for an OUT record to dst. The policy's data
// goes in as it is (no re-encoding); the sink's defaults fill in metadata the
// policy left empty.
func (s *Sink) render(dst []byte, record []byte, replay string) ([]byte, error) {
	o, err := parseOutput(record)
	if err != nil {
		return dst, fmt.Errorf("not an output record: %w", err)
	}
	if len(o.data) == 0 || string(o.data) == "null" {
		return dst, fmt.Errorf("output %q has no data", o.id)
	}
	dst = append(dst, `{"time":`...)
	dst = strconv.AppendFloat(dst, o.timestamp, 'f', -1, 64)
	dst = appendField(dst, "host", first(o.host, s.cfg.Host))
	dst = appendField(dst, "source", first(o.source, s.cfg.Source))
	dst = appendField(dst, "sourcetype", first(o.sourcetype, s.cfg.Sourcetype))
	dst = appendField(dst, "index", first(o.index, s.cfg.Index))
	fields := o.fields
	if string(fields) == "null" || string(fields) == "{}" {
		fields = nil
	}
	if replay != "" {
		// A replayed copy says so in an indexed field: rare enough to decode.
		m := map[string]any{}
		if len(fields) > 0 {
			if err := json.Unmarshal(fields, &m); err != nil {
				return dst, fmt.Errorf("output %q: fields: %w", o.id, err)
			}
		}
		m["sluice_replay"] = replay
		if fields, err = json.Marshal(m); err != nil {
			return dst, fmt.Errorf("output %q: fields: %w", o.id, err)
		}
	}
	if len(fields) > 0 {
		if fields[0] != '{' {
			return dst, fmt.Errorf("output %q: fields: want an object, got %s", o.id, fields)
		}
		dst = append(dst, `,"fields":`...)
		dst = append(dst, fields...)
	}
	dst = append(dst, `,"event":`...)
	dst = append(dst, o.data...)
	return append(dst, '}'), nil
}

func appendField(dst []byte, key, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return jsonx.AppendString(dst, value)
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
