package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrNotObject is returned (wrapped) by Fields for input that is not one
// JSON object.
var ErrNotObject = errors.New("not a JSON object")

// Fields calls f with each key of a JSON object (unquoted) and the raw
// bytes of its value, in the order written. It checks the object's framing
// — quotes, brackets, commas — not the values' grammar: callers validate
// what they pass on, or read records sluice wrote itself.
func Fields(b []byte, f func(key, value []byte) error) error {
	return FieldsLast(b, "", f)
}

// FieldsLast is Fields for an object whose writer puts the member named
// last at its end: that member's value is taken as the rest of the object,
// up to its closing brace, without being scanned, and is the last one f
// sees. last "" is Fields. On an object whose member last is not at the
// end, f gets that value with the members after it attached.
func FieldsLast(b []byte, last string, f func(key, value []byte) error) error {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return fmt.Errorf("%w: does not start with {", ErrNotObject)
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return fmt.Errorf("%w: want a key at offset %d", ErrNotObject, i)
		}
		end, err := skipString(b, i)
		if err != nil {
			return err
		}
		key, err := unquoteKey(b[i:end])
		if err != nil {
			return err
		}
		i = SkipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return fmt.Errorf("%w: want : after key %q", ErrNotObject, key)
		}
		start := SkipSpace(b, i+1)
		if last != "" && string(key) == last {
			v := rest(b, start)
			if len(v) == 0 {
				return fmt.Errorf("%w: key %q: no value, or no } at the end", ErrNotObject, key)
			}
			return f(key, v)
		}
		end, err = SkipValue(b, start)
		if err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
		if err := f(key, b[start:end]); err != nil {
			return err
		}
		i = SkipSpace(b, end)
		switch {
		case i < len(b) && b[i] == ',':
			i = SkipSpace(b, i+1)
		case i < len(b) && b[i] == '}':
			return trailing(b, i+1)
		default:
			return fmt.Errorf("%w: want , or } after key %q", ErrNotObject, key)
		}
	}
}

// rest is b[start:] without the object's closing brace and the white
// space around it; nil when b does not end with a brace.
func rest(b []byte, start int) []byte {
	j := len(b)
	for j > start && isSpace(b[j-1]) {
		j--
	}
	if j <= start || b[j-1] != '}' {
		return nil
	}
	for j--; j > start && isSpace(b[j-1]); {
		j--
	}
	return b[start:j]
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trailing(b []byte, i int) error {
	if SkipSpace(b, i) != len(b) {
		return fmt.Errorf("%w: data after the object", ErrNotObject)
	}
	return nil
}

// unquoteKey returns a quoted key without its quotes, decoding (escapes,
// invalid UTF-8) only when there is something to decode.
func unquoteKey(q []byte) ([]byte, error) {
	if plain(q) {
		return q[1 : len(q)-1], nil
	}
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return nil, fmt.Errorf("%w: key %s: %v", ErrNotObject, q, err)
	}
	return []byte(s), nil
}

// Unquote returns the string a JSON string literal holds.
func Unquote(q []byte) (string, error) {
	if len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"' && plain(q) {
		return string(q[1 : len(q)-1]), nil
	}
	var s string
	err := json.Unmarshal(q, &s)
	return s, err
}

// plain: a string literal that reads as it is written.
func plain(q []byte) bool {
	return bytes.IndexByte(q, '\\') < 0 && utf8.Valid(q)
}

// SkipValue returns the offset just past the JSON value that starts at
// b[i]: a string, an object or array (brackets balanced, strings skipped
// whole), or a bare literal up to the next delimiter.
func SkipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("value missing")
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errors.New("unterminated object or array")
	}
	start := i
	for i < len(b) && !isDelimiter(b[i]) {
		i++
	}
	if i == start {
		return 0, fmt.Errorf("unexpected %q at offset %d", b[i], i)
	}
	return i, nil
}

// skipString returns the offset past the string literal at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, errors.New("unterminated string")
		}
		j += k
		escapes := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			escapes++
		}
		if escapes%2 == 0 {
			return j + 1, nil
		}
		j++
	}
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ':', ' ', '\t', '\r', '\n', '"', '{', '[':
		return true
	}
	return false
}

// SkipSpace returns the offset of the first byte at or after i that is not
// JSON white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}
