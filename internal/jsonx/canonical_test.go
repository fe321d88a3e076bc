package jsonx

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// canonicalEncode writes a decoded value the canonical way, by the rules
// rather than by CanonicalValue's shortcuts.
func canonicalEncode(dst []byte, v any) []byte {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys) // Go compares strings bytewise
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, k)
			dst = append(dst, ':')
			dst = canonicalEncode(dst, x[k])
		}
		return append(dst, '}')
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = canonicalEncode(dst, e)
		}
		return append(dst, ']')
	case string:
		return AppendString(dst, x)
	case json.Number:
		return append(dst, x...)
	case bool:
		if x {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	}
	return append(dst, "null"...)
}

func decodeNumbers(t *testing.T, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

func TestCanonicalValue(t *testing.T) {
	for _, c := range []struct {
		json string
		want bool
	}{
		{`{"a":1,"b":"x","c":[true,false,null,{"d":-1.5e3}]}`, true},
		{`{}`, true},
		{`[]`, true},
		{`"q\"b\\n\n\r\t\u0001\u001f"`, true},
		{`"ünï😀 <&> ` + "\u2028" + `"`, true},
		{`{"b":1,"a":2}`, false},       // keys out of order
		{`{"a":1,"a":2}`, false},       // a key twice
		{`{"a": 1}`, false},            // a space
		{`[1, 2]`, false},              // a space
		{`"\/"`, false},                // not how AppendString escapes /
		{`"\u0041"`, false},            // A needs no escape
		{`"\u000a"`, false},            // \n is written \n
		{`"\u001F"`, false},            // hex in upper case
		{`"\b"`, false},                // written \u0008
		{`"\ud83d\ude00"`, false},      // a surrogate pair, written as the rune
		{`{"a\"":1}`, false},           // an escaped key
		{"\"bad \xff utf8\"", false},   // invalid UTF-8
		{`{"a":{"c":1,"b":2}}`, false}, // nested keys out of order
	} {
		end, ok := CanonicalValue([]byte(c.json), 0)
		if ok != c.want || (ok && end != len(c.json)) {
			t.Errorf("%s: canonical %v (end %d of %d), want %v", c.json, ok, end, len(c.json), c.want)
		}
	}
}

// AppendString's output for every string of a fuzzed record is canonical,
// and whatever CanonicalValue calls canonical is exactly what the rules
// write for the value it holds.
func FuzzCanonicalValue(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":"x\n","c":[true,{"d":-1.5e3}]}`, `{"b":1,"a":2}`, `"\u0001\u00e9"`, `[1, 2]`, `{"a":{"a":[]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		b = bytes.TrimSpace(b)
		v := decodeNumbers(t, b)
		want := canonicalEncode(nil, v)
		if end, ok := CanonicalValue(b, 0); ok && end == len(b) && !bytes.Equal(b, want) {
			t.Fatalf("%s is called canonical; written by the rules it is %s", b, want)
		}
		if end, ok := CanonicalValue(want, 0); !ok || end != len(want) {
			if allTame(v) {
				t.Fatalf("%s, written by the rules, is not called canonical (end %d of %d)", want, end, len(want))
			}
		}
	})
}

// allTame reports whether every number in v is tame (TameNumber).
func allTame(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			if !allTame(e) {
				return false
			}
		}
	case []any:
		for _, e := range x {
			if !allTame(e) {
				return false
			}
		}
	case json.Number:
		return TameNumber(string(x))
	}
	return true
}
