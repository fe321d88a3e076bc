package splunk

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/jsonx"
)

// parseOutput reads an OUT record. Unless the transform wrote it (encoded
// says how, batch.HeaderEncoded), the record is validated first (fast, no
// allocation), so what goes into the event is JSON; then its fields are
// sliced out instead of decoded: an encoding/json decode of every record
// was a third of the sink's CPU, validating what the transform's encoders
// wrote an eighth of a drain, and scanning the data to find the members
// after it a twentieth.
func parseOutput(record []byte, encoded string) (batch.Output, []byte, error) {
	switch encoded {
	case batch.EncodedDataLast:
		return batch.ReadOutputDataLast(record)
	case batch.EncodedTransform:
		return batch.ReadOutput(record)
	}
	if err := fastjson.ValidateBytes(record); err != nil {
		return batch.Output{}, nil, err
	}
	return batch.ReadOutput(record)
}

// render appends one HEC event for an OUT record to dst. The policy's data
// goes in as it is (no re-encoding); the sink's defaults fill in metadata the
// policy left empty.
func (s *Sink) render(dst []byte, record []byte, replay, encoded string) ([]byte, error) {
	o, fields, err := parseOutput(record, encoded)
	if err != nil {
		return dst, fmt.Errorf("not an output record: %w", err)
	}
	if len(o.Data) == 0 || string(o.Data) == "null" {
		return dst, fmt.Errorf("output %q has no data", o.ID)
	}
	dst = append(dst, `{"time":`...)
	dst = strconv.AppendFloat(dst, o.Timestamp, 'f', -1, 64)
	dst = appendField(dst, "host", first(o.Host, s.cfg.Host))
	dst = appendField(dst, "source", first(o.Source, s.cfg.Source))
	dst = appendField(dst, "sourcetype", first(o.Sourcetype, s.cfg.Sourcetype))
	dst = appendField(dst, "index", first(o.Index, s.cfg.Index))
	if string(fields) == "null" || string(fields) == "{}" {
		fields = nil
	}
	if replay != "" {
		// A replayed copy says so in an indexed field: rare enough to decode.
		m := map[string]any{}
		if len(fields) > 0 {
			if err := json.Unmarshal(fields, &m); err != nil {
				return dst, fmt.Errorf("output %q: fields: %w", o.ID, err)
			}
		}
		m["sluice_replay"] = replay
		if fields, err = json.Marshal(m); err != nil {
			return dst, fmt.Errorf("output %q: fields: %w", o.ID, err)
		}
	}
	if len(fields) > 0 {
		if fields[0] != '{' {
			return dst, fmt.Errorf("output %q: fields: want an object, got %s", o.ID, fields)
		}
		dst = append(dst, `,"fields":`...)
		dst = append(dst, fields...)
	}
	dst = append(dst, `,"event":`...)
	dst = append(dst, o.Data...)
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
