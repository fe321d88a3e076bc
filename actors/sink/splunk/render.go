package splunk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/jsonx"
	"github.com/sluicehq/sluice/queue/batch"
)

// members are an OUT record's members as the sink writes them into an
// event: each as JSON, nil when absent or empty.
type members struct {
	id, timestamp, index, sourcetype, source, host, fields, data []byte
}

// readWritten takes the members of a record the transform wrote
// (AppendJSON, in a batch marked EncodedDataLast) as they are written,
// instead of decoding them to encode them again, which was half of
// rendering a record. That is byte-identical for what AppendJSON wrote: a
// string with no backslash in it is valid UTF-8 that needs no escape (so
// AppendString writes it again as it is), and a number in Go's shortest
// form prints again to itself. A string with escapes is decoded and
// encoded again (FuzzRenderDataLast checks the sameness).
func readWritten(record []byte) (m members, err error) {
	err = jsonx.FieldsLast(record, "data", func(key, v []byte) error {
		var dst *[]byte
		switch string(key) {
		case "id":
			m.id = v
			return nil
		case "timestamp":
			if !jsonx.ValidNumber(string(v)) {
				return fmt.Errorf("field timestamp: want a number, got %s", v)
			}
			m.timestamp = v
			return nil
		case "data":
			m.data = v
			return nil
		case "fields":
			m.fields = v
			return nil
		case "index":
			dst = &m.index
		case "sourcetype":
			dst = &m.sourcetype
		case "source":
			dst = &m.source
		case "host":
			dst = &m.host
		default:
			return nil
		}
		if len(v) < 2 || v[0] != '"' {
			return fmt.Errorf("field %s: want a string, got %s", key, v)
		}
		if len(v) == 2 {
			return nil // "": the sink's default
		}
		if bytes.IndexByte(v, '\\') < 0 {
			*dst = v
			return nil
		}
		str, err := jsonx.Unquote(v)
		if err != nil {
			return fmt.Errorf("field %s: %w", key, err)
		}
		*dst = jsonx.AppendString(nil, str)
		return nil
	})
	return m, err
}

// readChecked reads any other record into members. Unless the transform
// wrote it (EncodedTransform), the record is validated first (fast, no
// allocation), so what goes into the event is JSON; then its fields are
// sliced out instead of decoded: an encoding/json decode of every record
// was a third of the sink's CPU, and validating what the transform's
// encoders wrote an eighth of a drain.
func readChecked(record []byte, encoded string) (members, error) {
	if encoded != batch.EncodedTransform {
		if err := fastjson.ValidateBytes(record); err != nil {
			return members{}, err
		}
	}
	o, fields, err := batch.ReadOutput(record)
	if err != nil {
		return members{}, err
	}
	return members{
		id: quoted(o.ID), timestamp: strconv.AppendFloat(nil, o.Timestamp, 'f', -1, 64),
		index: quoted(o.Index), sourcetype: quoted(o.Sourcetype), source: quoted(o.Source), host: quoted(o.Host),
		fields: fields, data: o.Data,
	}, nil
}

// idText is the record's ID, for errors.
func (m members) idText() string {
	id, _ := jsonx.Unquote(m.id)
	return id
}

// render appends one HEC event for an OUT record to dst. The policy's data
// goes in as it is (no re-encoding); the sink's defaults fill in metadata the
// policy left empty.
func (s *Sink) render(dst []byte, record []byte, replay, encoded string) ([]byte, error) {
	var m members
	var err error
	if encoded == batch.EncodedDataLast {
		m, err = readWritten(record)
	} else {
		m, err = readChecked(record, encoded)
	}
	if err != nil {
		return dst, fmt.Errorf("not an output record: %w", err)
	}
	if len(m.data) == 0 || string(m.data) == "null" {
		return dst, fmt.Errorf("output %q has no data", m.idText())
	}
	dst = append(dst, `{"time":`...)
	if len(m.timestamp) == 0 {
		dst = append(dst, '0')
	} else {
		dst = append(dst, m.timestamp...)
	}
	dst = appendField(dst, `,"host":`, m.host, s.defaults.host)
	dst = appendField(dst, `,"source":`, m.source, s.defaults.source)
	dst = appendField(dst, `,"sourcetype":`, m.sourcetype, s.defaults.sourcetype)
	dst = appendField(dst, `,"index":`, m.index, s.defaults.index)
	fields := m.fields
	if string(fields) == "null" || string(fields) == "{}" {
		fields = nil
	}
	if replay != "" {
		// A replayed copy says so in an indexed field: rare enough to decode.
		f := map[string]any{}
		if len(fields) > 0 {
			if err := json.Unmarshal(fields, &f); err != nil {
				return dst, fmt.Errorf("output %q: fields: %w", m.idText(), err)
			}
		}
		f["sluice_replay"] = replay
		if fields, err = json.Marshal(f); err != nil {
			return dst, fmt.Errorf("output %q: fields: %w", m.idText(), err)
		}
	}
	if len(fields) > 0 {
		if fields[0] != '{' {
			return dst, fmt.Errorf("output %q: fields: want an object, got %s", m.idText(), fields)
		}
		dst = append(dst, `,"fields":`...)
		dst = append(dst, fields...)
	}
	dst = append(dst, `,"event":`...)
	dst = append(dst, m.data...)
	return append(dst, '}'), nil
}

// defaults are the sink's metadata for events whose policy gave none,
// encoded once.
type defaults struct{ host, source, sourcetype, index []byte }

func newDefaults(c *Config) defaults {
	return defaults{host: quoted(c.Host), source: quoted(c.Source), sourcetype: quoted(c.Sourcetype), index: quoted(c.Index)}
}

// appendField appends a member (prefix: its comma and key) with the
// record's value, else the default, else nothing.
func appendField(dst []byte, prefix string, value, def []byte) []byte {
	if len(value) == 0 {
		value = def
	}
	if len(value) == 0 {
		return dst
	}
	dst = append(dst, prefix...)
	return append(dst, value...)
}

// quoted is s as a JSON string; nil for "".
func quoted(s string) []byte {
	if s == "" {
		return nil
	}
	return jsonx.AppendString(nil, s)
}
