// Package jsonx appends JSON by hand on the hot paths (one call per
// record), where encoding/json's reflection and re-validation cost more
// than the work itself.
package jsonx

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"unicode/utf8"
	"unsafe"
)

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 is replaced as
// encoding/json does.
func AppendString(dst []byte, s string) []byte {
	// Read in place: AppendBytes only reads its argument.
	return AppendBytes(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// AppendBytes is AppendString for a string held in a byte slice, without
// converting it (a copy per string on the hottest path). It escapes and
// checks UTF-8 in one pass, eight bytes at a time while they are plain
// ASCII: most strings are, and this runs for every key and value of every
// record. A string that is not valid UTF-8 is written by encoding/json
// instead, as it always was.
func AppendBytes(dst []byte, s []byte) []byte {
	base := len(dst)
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) {
			m := specials(s[i:])
			if m == 0 {
				i += 8
				continue
			}
			i += firstSpecial(m) // s[i] is one
		} else if i > 0 && len(s) >= 8 && specials(s[len(s)-8:]) == 0 {
			break // the last eight bytes overlap those already read: all plain
		}
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n <= 1 {
				b, _ := json.Marshal(string(s))
				return append(dst[:base], b...)
			}
			i += n
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// specials flags, by its high bit, each of the first eight bytes of b that
// is not ASCII needing no escape: 0 when all eight are plain. Bit tricks: a
// byte is zero, or below n, when subtracting sets its high bit that was
// clear. A borrow only runs from a byte that is itself flagged into those
// above it, so the first flagged byte is always a true one.
func specials(b []byte) uint64 {
	w := binary.LittleEndian.Uint64(b)
	return ((w-ones*0x20)&^w | zeroByte(w^(ones*'"')) | zeroByte(w^(ones*'\\')) | w) & highs
}

// firstSpecial is the index of the first byte specials flagged in m != 0.
func firstSpecial(m uint64) int { return bits.TrailingZeros64(m) >> 3 }

// plainRun is the offset of the first byte at or after i that may need a
// look (specials), read eight bytes at a time: i itself once fewer than
// eight bytes are left.
func plainRun(b []byte, i int) int {
	for i+8 <= len(b) {
		if m := specials(b[i:]); m != 0 {
			return i + firstSpecial(m)
		}
		i += 8
	}
	return i
}

// zeroByte has the high bit of every zero byte of x set (and maybe others
// above one).
func zeroByte(x uint64) uint64 { return (x - ones) &^ x }

// ValidNumber reports whether s is a number as JSON's grammar has it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func ValidNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
