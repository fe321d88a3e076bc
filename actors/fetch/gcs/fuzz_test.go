package gcs

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Every parser takes any object bytes: each record it emits is a JSON
// object, each bad part has a reason, and nothing panics.
func FuzzParsers(f *testing.F) {
	f.Add(uint8(0), []byte("{\"a\":1}\n{\"b\":2\n{\"c\":3}{\"d\":4}\n"))
	f.Add(uint8(1), []byte(`[{"a":1},{"b":2}, 3]`))
	f.Add(uint8(2), []byte(`{"Records":[{"eventName":"x"},{"eventName":"y"}]}`))
	f.Add(uint8(3), []byte("user,action\nalice,login\nbob\n"))
	f.Add(uint8(4), []byte("line one\nline \xff two\n"))
	f.Add(uint8(0), []byte("{\n  \"pretty\": true\n}\n"))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		parser := Parsers[int(which)%len(Parsers)]
		var c fuzzCollector
		if err := parse(parser, bytes.NewReader(data), 512, &c); err != nil {
			return // a read error: the object is read again
		}
		for _, r := range c.recs {
			var v map[string]any
			if err := json.Unmarshal(r, &v); err != nil {
				t.Fatalf("%s parser emitted %q, not a JSON object: %v", parser, r, err)
			}
		}
	})
}

type fuzzCollector struct{ recs [][]byte }

func (c *fuzzCollector) record(rec []byte) error {
	c.recs = append(c.recs, append([]byte(nil), rec...))
	return nil
}

func (c *fuzzCollector) bad(where string, raw []byte, reason string) error {
	if reason == "" {
		panic("a bad record without a reason at " + where)
	}
	return nil
}
