package jsonx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestFields(t *testing.T) {
	var got []string
	err := Fields([]byte(` { "id" : "a\"b", "n":-1.5e3,"data":{"x":[1,"]}"],"y":{}} ,"k\u00e9":null , "t":true}`), func(k, v []byte) error {
		got = append(got, string(k)+"="+string(v))
		return nil
	})
	want := []string{`id="a\"b"`, `n=-1.5e3`, `data={"x":[1,"]}"],"y":{}}`, `ké=null`, `t=true`}
	if err != nil || len(got) != len(want) {
		t.Fatalf("got %q, %v", got, err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("field %d: got %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{``, `[]`, `{"a":1`, `{"a" 1}`, `{"a":1,}`, `{"a":"x}`, `{"a":{"b":1}`, `{"a":1} x`, `{a:1}`} {
		if err := Fields([]byte(bad), func(k, v []byte) error { return nil }); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestFieldsLast(t *testing.T) {
	var got []string
	b := []byte(` { "id" : "a\"b", "n":-1.5e3, "data" : {"x":[1,"]}"],"y":{}} , "bad":1 } `)
	err := FieldsLast(b, "data", func(k, v []byte) error {
		got = append(got, string(k)+"="+string(v))
		return nil
	})
	// data is not last here: the members after it come with it.
	want := []string{`id="a\"b"`, `n=-1.5e3`, `data={"x":[1,"]}"],"y":{}} , "bad":1`}
	if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{`{"data":}`, `{"data":1`, `{"data": }  `, `{"id":1,"data"`} {
		if err := FieldsLast([]byte(bad), "data", func(k, v []byte) error { return nil }); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// For any JSON object, Fields finds what encoding/json finds, and
// FieldsLast, told the name of the last member, finds what Fields finds.
func FuzzFields(f *testing.F) {
	f.Add([]byte(`{"id":"a/1","timestamp":1795000000.5,"data":{"user":"alice"},"fields":{"k":"v"}}`))
	f.Add([]byte(`{"a\\":"\\\"","b":[{"c":"}"}],"d":-0.0e+1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var want map[string]json.RawMessage
		if json.Unmarshal(b, &want) != nil || want == nil {
			return
		}
		got := map[string]json.RawMessage{}
		if err := Fields(b, func(k, v []byte) error {
			got[string(k)] = v
			return nil
		}); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d keys, want %d", b, len(got), len(want))
		}
		var seq []string
		_ = Fields(b, func(k, v []byte) error {
			seq = append(seq, string(k), string(v))
			return nil
		})
		if n := len(seq); n > 0 {
			last, once := seq[n-2], 0
			for i := 0; i < n; i += 2 {
				if seq[i] == last {
					once++
				}
			}
			var seqLast []string
			if err := FieldsLast(b, last, func(k, v []byte) error {
				seqLast = append(seqLast, string(k), string(v))
				return nil
			}); once == 1 && (err != nil || strings.Join(seqLast, "\x00") != strings.Join(seq, "\x00")) {
				t.Fatalf("%q: FieldsLast(%q) %q, %v; Fields %q", b, last, seqLast, err, seq)
			}
		}
		for k, w := range want {
			if !bytes.Equal(bytes.TrimSpace(got[k]), bytes.TrimSpace(w)) {
				t.Fatalf("%q: key %q = %s, want %s", b, k, got[k], w)
			}
		}
	})
}
