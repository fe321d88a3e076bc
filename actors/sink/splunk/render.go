package splunk

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice/batch"
)

// render appends one HEC event for an OUT record to dst. The policy's data
// goes in as it is (no re-encoding); the sink's defaults fill in metadata the
// policy left empty.
func (s *Sink) render(dst []byte, record []byte, replay string) ([]byte, error) {
	var o batch.Output
	if err := json.Unmarshal(record, &o); err != nil {
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
	fields := o.Fields
	if replay != "" {
		fields = make(map[string]any, len(o.Fields)+1)
		for k, v := range o.Fields {
			fields[k] = v
		}
		fields["sluice_replay"] = replay
	}
	if len(fields) > 0 {
		f, err := json.Marshal(fields)
		if err != nil {
			return dst, fmt.Errorf("output %q: fields: %w", o.ID, err)
		}
		dst = append(dst, `,"fields":`...)
		dst = append(dst, f...)
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
	q, _ := json.Marshal(value) // JSON quoting, not Go's
	return append(dst, q...)
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
