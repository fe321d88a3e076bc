package jsonx

import (
	"encoding/json"
	"testing"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "tab\tnl\ncr\r", "ctl\x01\x1f", "ünï😀", "bad\xffutf8", "<html>&"} {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: decodes to %q, want %q", s, back, wantBack)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("a\"b\\c\n\x00")
	f.Fuzz(func(t *testing.T, s string) {
		var back string
		if err := json.Unmarshal(AppendString(nil, s), &back); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
	})
}

func TestValidNumber(t *testing.T) {
	for _, s := range []string{"0", "-0", "7", "12.5", "1e9", "1E+9", "-3.25e-2", "123456789012345678901234567890"} {
		if !ValidNumber(s) {
			t.Errorf("%q: want valid", s)
		}
	}
	for _, s := range []string{"", "-", "7+0000000000", "01", "1.", ".5", "1e", "1e+", "nan", "inf", "-inf", "0x10", "1_000", "+1", "1.5.5"} {
		if ValidNumber(s) {
			t.Errorf("%q: want invalid", s)
		}
	}
}

// ValidNumber agrees with encoding/json on any text.
func FuzzValidNumber(f *testing.F) {
	for _, s := range []string{"0", "-1.5e3", "7+0", "01", "nan"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var n json.Number
		want := json.Unmarshal([]byte(s), &n) == nil && string(n) == s
		if got := ValidNumber(s); got != want {
			t.Fatalf("ValidNumber(%q) = %v, encoding/json says %v", s, got, want)
		}
	})
}
