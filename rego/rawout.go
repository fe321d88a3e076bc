package rego

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"

	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/jsonx"
)

// rawMember is a member of a record's top-level object, as offsets into
// the record: without pointers, sorting it moves no pointers either (each
// would be a write barrier).
type rawMember struct {
	prefix     uint64 // the key's first 8 bytes, big-endian: most comparisons end there
	key, keyTo int32  // the key's text between its quotes (it has no escapes)
	val, valTo int32  // the value's text if it is canonical (jsonx), else valTo == 0
}

func (a *rawMember) less(b *rawMember, raw []byte) bool {
	if a.prefix != b.prefix {
		return a.prefix < b.prefix
	}
	return bytes.Compare(raw[a.key:a.keyTo], raw[b.key:b.keyTo]) < 0
}

func keyPrefix(k []byte) uint64 {
	var p [8]byte
	copy(p[:], k)
	return binary.BigEndian.Uint64(p[:])
}

// appendRecordSorted writes the record less the keys in drop exactly as
// appendSorted writes its parsed value, but copies each member's value
// from the record where it is already written that way (jsonx's canonical
// form: what an SLS record's fields, written by the fetcher, always are),
// and has only the top-level keys to sort. A member whose value is not
// canonical is written from its parsed value. False: a key has an escape,
// and appendSorted must do it all.
func appendRecordSorted(dst, raw []byte, root *fastjson.Value, drop []string, scratch *[]rawMember, members *[]member) ([]byte, bool) {
	ms := (*scratch)[:0]
	defer func() { *scratch = ms[:0] }()
	i := jsonx.SkipSpace(raw, 0)
	if len(raw) > math.MaxInt32 || i >= len(raw) || raw[i] != '{' {
		return dst, false
	}
	i = jsonx.SkipSpace(raw, i+1)
	for i < len(raw) && raw[i] != '}' {
		if raw[i] != '"' {
			return dst, false
		}
		i0 := i
		end, escaped, ok := jsonx.CanonicalString(raw, i)
		if !ok || escaped {
			return dst, false
		}
		key := raw[i+1 : end-1]
		i = jsonx.SkipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return dst, false
		}
		start := jsonx.SkipSpace(raw, i+1)
		m := rawMember{prefix: keyPrefix(key), key: int32(i0 + 1), keyTo: int32(end - 1)}
		if end, ok := jsonx.CanonicalValue(raw, start); ok {
			m.val, m.valTo, i = int32(start), int32(end), end
		} else {
			var err error
			if i, err = jsonx.SkipValue(raw, start); err != nil {
				return dst, false
			}
		}
		if !dropped(drop, key) {
			ms = append(ms, m)
		}
		i = jsonx.SkipSpace(raw, i)
		if i < len(raw) && raw[i] == ',' {
			i = jsonx.SkipSpace(raw, i+1)
		}
	}
	sortMembers(ms, raw)
	dst = append(dst, '{')
	for n := range ms {
		m := &ms[n]
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, raw[m.key-1:m.keyTo+1]...) // with its quotes
		dst = append(dst, ':')
		if m.valTo != 0 {
			dst = append(dst, raw[m.val:m.valTo]...)
			continue
		}
		o, _ := root.Object()
		dst = appendSorted(dst, o.Get(string(raw[m.key:m.keyTo])), nil, members)
	}
	return append(dst, '}'), true
}

func dropped(drop []string, key []byte) bool {
	for _, d := range drop {
		if string(key) == d {
			return true
		}
	}
	return false
}

// scanRecord splits a record into its top-level members, sorted by key, if
// the record is an object whose keys have no escapes and whose every value
// is canonical (jsonx.CanonicalValue: which includes valid JSON, tame
// numbers and, within, no repeated keys). A plan can then answer from the
// record's text without parsing it (an SLS record, whose fields the fetcher
// writes, always is such a record). False: anything else; the record is
// parsed.
func scanRecord(raw []byte, ms []rawMember) ([]rawMember, bool) {
	i := jsonx.SkipSpace(raw, 0)
	if len(raw) > math.MaxInt32 || i >= len(raw) || raw[i] != '{' {
		return ms, false
	}
	i = jsonx.SkipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return ms, jsonx.SkipSpace(raw, i+1) == len(raw)
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return ms, false
		}
		end, escaped, ok := jsonx.CanonicalString(raw, i)
		if !ok || escaped {
			return ms, false
		}
		m := rawMember{prefix: keyPrefix(raw[i+1 : end-1]), key: int32(i + 1), keyTo: int32(end - 1)}
		i = jsonx.SkipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return ms, false
		}
		start := jsonx.SkipSpace(raw, i+1)
		if end, ok = jsonx.CanonicalValue(raw, start); !ok {
			return ms, false
		}
		m.val, m.valTo = int32(start), int32(end)
		ms = append(ms, m)
		i = jsonx.SkipSpace(raw, end)
		if i >= len(raw) {
			return ms, false
		}
		if raw[i] == '}' {
			break
		}
		if raw[i] != ',' {
			return ms, false
		}
		i = jsonx.SkipSpace(raw, i+1)
	}
	if jsonx.SkipSpace(raw, i+1) != len(raw) {
		return ms, false
	}
	sortMembers(ms, raw)
	for n := 1; n < len(ms); n++ { // a repeated key: OPA keeps the last, the plan leaves it to OPA
		if !ms[n-1].less(&ms[n], raw) {
			return ms, false
		}
	}
	return ms, true
}

// sortMembers sorts members by key: by insertion, as a record has a few
// dozen keys, most told apart by their first eight bytes.
func sortMembers(ms []rawMember, raw []byte) {
	if len(ms) > 64 {
		slices.SortStableFunc(ms, func(a, b rawMember) int {
			switch {
			case a.less(&b, raw):
				return -1
			case b.less(&a, raw):
				return 1
			}
			return 0
		})
		return
	}
	for a := 1; a < len(ms); a++ {
		m, b := ms[a], a
		for ; b > 0 && m.less(&ms[b-1], raw); b-- {
			ms[b] = ms[b-1]
		}
		ms[b] = m
	}
}

// findMember is 1 + the index of the member with key, 0 if there is none.
func findMember(raw []byte, ms []rawMember, key string) int {
	prefix := keyPrefix([]byte(key))
	lo, hi := 0, len(ms)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		m := &ms[mid]
		if m.prefix < prefix || (m.prefix == prefix && string(raw[m.key:m.keyTo]) < key) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(ms) && string(raw[ms[lo].key:ms[lo].keyTo]) == key {
		return lo + 1
	}
	return 0
}

// appendMembers writes the sorted members less the keys in drop: exactly
// what appendSorted writes for the parsed record.
func appendMembers(dst, raw []byte, ms []rawMember, drop []string) []byte {
	dst = append(dst, '{')
	first := true
	for n := range ms {
		m := &ms[n]
		if dropped(drop, raw[m.key:m.keyTo]) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, raw[m.key-1:m.keyTo+1]...) // with its quotes
		dst = append(dst, ':')
		dst = append(dst, raw[m.val:m.valTo]...)
	}
	return append(dst, '}')
}
