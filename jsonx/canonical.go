package jsonx

import (
	"bytes"
	"unicode/utf8"
)

// Canonical JSON, here, is what AppendString writes for strings, with no
// space between tokens and object keys in bytewise order: the form OPA's
// output takes once encoded. A value already in that form can be copied as
// it is instead of being parsed and written again.

// CanonicalValue reports where the value at b[i] ends and whether it is
// canonical; b must be valid JSON. When it is not canonical, end is not
// meaningful: SkipValue finds it. A number's text is taken as it stands
// (OPA writes a number as it was written).
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
	case c == 't' || c == 'n':
		return i + 4, i+4 <= len(b)
	case c == 'f':
		return i + 5, i+5 <= len(b)
	case c == '-' || isDigit(c):
		j := i + 1
		for j < len(b) && (isDigit(b[j]) || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		return j, true
	}
	return 0, false
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
		if j+8 <= len(b) {
			w := uint64(b[j]) | uint64(b[j+1])<<8 | uint64(b[j+2])<<16 | uint64(b[j+3])<<24 |
				uint64(b[j+4])<<32 | uint64(b[j+5])<<40 | uint64(b[j+6])<<48 | uint64(b[j+7])<<56
			if w&highs == 0 && !needsEscape(w) {
				j += 8
				continue
			}
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
