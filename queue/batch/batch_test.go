package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cases := [][][]byte{
		{},
		{[]byte{}},
		{[]byte(`{"a":1}`), []byte(""), bytes.Repeat([]byte("x"), 300)},
	}
	for i, recs := range cases {
		got, err := Decode(Encode(recs))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(got) != len(recs) {
			t.Fatalf("case %d: %d records, want %d", i, len(got), len(recs))
		}
		for j := range recs {
			if !bytes.Equal(got[j], recs[j]) {
				t.Errorf("case %d record %d: %q, want %q", i, j, got[j], recs[j])
			}
		}
	}
}

func TestDecodeRejectsCorruptBodies(t *testing.T) {
	good := Encode([][]byte{[]byte("hello"), []byte("world")})
	bad := map[string][]byte{
		"empty":     {},
		"version":   append([]byte{9}, good[1:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 'x'),
		"count":     {1, 0xff, 0xff, 0x03},
	}
	for name, body := range bad {
		if _, err := Decode(body); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
}

func TestRecordsDoNotOverwriteEachOther(t *testing.T) {
	recs, err := Decode(Encode([][]byte{[]byte("ab"), []byte("cd")}))
	if err != nil {
		t.Fatal(err)
	}
	// The capacity is clipped, so appending to one record cannot clobber the next.
	_ = append(recs[0], 'X')
	if string(recs[1]) != "cd" {
		t.Fatalf("record 1 = %q after append to record 0", recs[1])
	}
}

func TestRecordID(t *testing.T) {
	if got := RecordID("sls/p/l/0/MTA=/2", 7); got != "sls/p/l/0/MTA=/2/7" {
		t.Fatal(got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode([][]byte{[]byte("a"), []byte("bc")}))
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := Decode(body)
		if err != nil {
			return
		}
		if again := Encode(recs); !bytes.Equal(again, body) {
			// Non-minimal varints decode but re-encode differently; the records must still match.
			recs2, err := Decode(again)
			if err != nil || fmt.Sprint(recs2) != fmt.Sprint(recs) {
				t.Fatalf("re-encode changed records")
			}
		}
	})
}

func TestOutputAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, o := range []Output{
		{ID: "a", Timestamp: 1732480000.25, Data: json.RawMessage(`{"k":"v\n"}`)},
		{ID: "q\"x", Timestamp: 1, Data: json.RawMessage(`[1,2]`), Index: "main", Sourcetype: "sls:audit", Source: "s", Host: "h", Fields: map[string]any{"f": 1.5}},
		{ID: "b", Timestamp: 2, Data: json.RawMessage(`"x"`), Dataset: "d", Table: "t", Partition: "day"},
	} {
		got, err := o.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(o)
		var g, w any
		if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil || fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("AppendJSON %s, encoding/json %s", got, want)
		}
	}
}

// A released body comes back for a batch it can hold, holding exactly that
// batch; one too small is not used.
func TestBodiesRecycle(t *testing.T) {
	big := [][]byte{bytes.Repeat([]byte("a"), 1000), []byte("b")}
	small := [][]byte{[]byte(`{"x":1}`), []byte(`{"y":2}`)}
	reused := false
	for range 100 { // sync.Pool may drop what it is handed (the race detector makes it)
		var b Bodies
		first := b.Encode(big)
		b.Release(first)
		body := b.Encode(small)
		got, err := Decode(body)
		if err != nil || len(got) != 2 || string(got[0]) != `{"x":1}` || string(got[1]) != `{"y":2}` {
			t.Fatalf("a recycled body decodes as %q, %v", got, err)
		}
		reused = reused || &body[0] == &first[0]

		var c Bodies
		tiny := c.Encode(small)
		c.Release(tiny)
		if larger := c.Encode(big); &larger[0] == &tiny[0] {
			t.Fatal("a body too small for the batch was used")
		} else if got, err := Decode(larger); err != nil || !bytes.Equal(got[0], big[0]) {
			t.Fatalf("the big batch decodes as %q, %v", got, err)
		}
	}
	if !reused {
		t.Fatal("no released body was ever used again")
	}
}
