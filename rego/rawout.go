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
	// Insertion sort: a record has a few dozen keys, most told apart by
	// their first eight bytes.
	if len(ms) > 64 {
		slices.SortFunc(ms, func(a, b rawMember) int {
			if a.less(&b, raw) {
				return -1
			}
			return 1 // keys are unique (plainJSON)
		})
	}
	for a := 1; a < len(ms); a++ {
		m, b := ms[a], a
		for ; b > 0 && m.less(&ms[b-1], raw); b-- {
			ms[b] = ms[b-1]
		}
		ms[b] = m
	}
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
