package jsonx

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Canonical JSON, here, is what AppendString writes for strings, with no
// space between tokens and object keys in bytewise order: the form OPA's
// output takes once encoded. A value already in that form can be copied as
// it is instead of being parsed and written again.

// CanonicalValue reports where the value at b[i] ends and whether it is
// canonical, which includes being valid JSON. When it is not, end is not
// meaningful: SkipValue finds it. A number's text is taken as it stands
// (OPA writes a number as it was written), if it is valid and tame.
func CanonicalValue(b []byte, i int) (end int, ok bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok := CanonicalString(b, i)
		return end, ok
	case c == '{':
		return canonicalObject(b, i)
	case c == '[':
		return canonicalArray(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'n':
		return literal(b, i, "null")
	case c == 'f':
		return literal(b, i, "false")
	case c == '-' || isDigit(c):
		j := i + 1
		for j < len(b) && (isDigit(b[j]) || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		n := string(b[i:j]) // not kept: no copy
		return j, ValidNumber(n) && TameNumber(n)
	}
	return 0, false
}

func literal(b []byte, i int, lit string) (int, bool) {
	end := i + len(lit)
	return end, end <= len(b) && string(b[i:end]) == lit
}

// TameNumber reports whether a number's exponent is within ±1000: OPA's
// arithmetic on 1e9999999 is ten million digits of big.Float work (20 s)
// that a time limit cannot interrupt, so policies refuse such records.
func TameNumber(n string) bool {
	i := strings.IndexAny(n, "eE")
	if i < 0 {
		return true
	}
	exp := strings.TrimLeft(n[i+1:], "+-0")
	return len(exp) < 4 || (len(exp) == 4 && exp <= "1000")
}

func canonicalObject(b []byte, i int) (int, bool) {
	i++
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	var prev []byte
	for first := true; ; first = false {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		end, escaped, ok := CanonicalString(b, i)
		// An escaped key sorts by its decoded bytes, which its text does
		// not show: such an object is left to the slow path.
		if !ok || escaped {
			return 0, false
		}
		key := b[i+1 : end-1]
		if !first && bytes.Compare(prev, key) >= 0 {
			return 0, false
		}
		prev = key
		if end >= len(b) || b[end] != ':' {
			return 0, false
		}
		if i, ok = CanonicalValue(b, end+1); !ok || i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

func canonicalArray(b []byte, i int) (int, bool) {
	i++
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = CanonicalValue(b, i); !ok || i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// CanonicalString reports where the string literal at b[i] == '"' ends,
// whether it has escapes, and whether it is exactly what AppendString
// writes for its value: valid UTF-8, and escapes only of '"', '\\', \n,
// \r, \t and, as \u00xx, the other control characters.
func CanonicalString(b []byte, i int) (end int, escaped, ok bool) {
	j := i + 1
	for j < len(b) {
		if j = plainRun(b, j); j >= len(b) {
			break
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, true
		case c == '\\':
			n := canonicalEscape(b[j:])
			if n == 0 {
				return 0, true, false
			}
			escaped = true
			j += n
		case c < 0x20:
			return 0, escaped, false
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && n <= 1 {
				return 0, escaped, false
			}
			j += n
		default:
			j++
		}
	}
	return 0, escaped, false
}

// canonicalEscape is the length of the escape at e[0] == '\\' if
// AppendString writes it so, else 0.
func canonicalEscape(e []byte) int {
	if len(e) < 2 {
		return 0
	}
	switch e[1] {
	case '"', '\\', 'n', 'r', 't':
		return 2
	case 'u':
		if len(e) < 6 || e[2] != '0' || e[3] != '0' || (e[4] != '0' && e[4] != '1') {
			return 0
		}
		c := byte(0)
		switch x := e[5]; {
		case isDigit(x):
			c = x - '0'
		case x >= 'a' && x <= 'f':
			c = x - 'a' + 10
		default:
			return 0
		}
		c += (e[4] - '0') << 4
		if c == '\n' || c == '\r' || c == '\t' {
			return 0
		}
		return 6
	}
	return 0
}
