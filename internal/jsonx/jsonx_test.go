package jsonx

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
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
	f.Add("ünï😀 \xe2\x80\xa8 bad\xff\xc3 <&>")
	f.Add("\xed\xa0\x80 surrogate, \xf4\x90\x80\x80 beyond U+10FFFF")
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		// Byte for byte what the two-pass rule gives: valid UTF-8 escaped
		// byte by byte, anything else as encoding/json writes it.
		want := escapeBytewise([]byte(s))
		if !utf8.ValidString(s) {
			want, _ = json.Marshal(s)
		}
		if string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
		if b := AppendBytes([]byte("x"), []byte(s)); string(b[1:]) != string(want) || b[0] != 'x' {
			t.Fatalf("%q: AppendBytes gave %s, want %s after the prefix", s, b, want)
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

// Every byte value at every position of a word: escaped exactly as the
// byte-at-a-time rules say.
func TestAppendStringEveryByteEveryPosition(t *testing.T) {
	for c := 0; c < 0x100; c++ {
		for pos := 0; pos < 20; pos++ {
			b := []byte(strings.Repeat("a", 21))
			b[pos] = byte(c)
			if c >= 0x80 { // a valid two-byte rune around it
				b[pos], b[pos+1] = 0xc3, byte(0x80|c&0x3f)
			}
			got := string(AppendString(nil, string(b)))
			if want := string(escapeBytewise(b)); got != want {
				t.Fatalf("byte %#x at %d: got %s, want %s", c, pos, got, want)
			}
			if string(AppendBytes(nil, b)) != got {
				t.Fatalf("byte %#x at %d: AppendBytes differs from AppendString", c, pos)
			}
		}
	}
}

// escapeBytewise is the rule, one byte at a time.
func escapeBytewise(s []byte) []byte {
	out := []byte{'"'}
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c == '\n':
			out = append(out, `\n`...)
		case c == '\r':
			out = append(out, `\r`...)
		case c == '\t':
			out = append(out, `\t`...)
		case c < 0x20:
			out = append(out, fmt.Sprintf(`\u%04x`, c)...)
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

func BenchmarkAppendString(b *testing.B) {
	s := strings.Repeat("aliyun-cli/3.0.204 (linux; amd64) go/1.22 ", 10)
	b.SetBytes(int64(len(s)))
	var dst []byte
	for b.Loop() {
		dst = AppendString(dst[:0], s)
	}
}

// The keys and values of an audit record: short strings, where a second
// pass over each costs more than its length suggests.
func BenchmarkAppendShortStrings(b *testing.B) {
	strs := []string{"seq", "42", "event_id", "9f2c4e1d7a6b3c58-1a2b3c4d", "event_time", "2026-11-24T00:00:00.042Z",
		"user", "alice", "user_type", "RamUser", "action", "DeleteBucket", "source_ip", "203.0.113.7", "region", "cn-hangzhou",
		"result", "success", "__time__", "1764000000", "__topic__", "audit_log", "__source__", "10.0.0.7"}
	n := 0
	for _, s := range strs {
		n += len(s)
	}
	b.SetBytes(int64(n))
	var dst []byte
	for b.Loop() {
		dst = dst[:0]
		for _, s := range strs {
			dst = AppendString(dst, s)
		}
	}
}
