package plan

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"

	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/jsonx"
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

// scanMembers splits a record into its top-level members, sorted by key,
// each value's text kept where it is canonical (jsonx.CanonicalValue: the
// form OPA's output takes, which includes valid JSON, tame numbers and,
// within, no repeated keys). ok is false unless the record is a JSON
// object whose keys have no escapes. canonical: every value is canonical
// and no key repeats — a plan can then answer from the record's text
// without parsing it (an SLS record, whose fields the fetcher writes,
// always is such a record).
//
// order sorts the members (keyOrder: as the last record's, when the keys
// are the same); nil sorts them afresh.
func scanMembers(raw []byte, ms []rawMember, order *keyOrder) (_ []rawMember, ok, canonical bool) {
	i := jsonx.SkipSpace(raw, 0)
	if len(raw) > math.MaxInt32 || i >= len(raw) || raw[i] != '{' {
		return ms, false, false
	}
	i = jsonx.SkipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' { // {}
		ok = jsonx.SkipSpace(raw, i+1) == len(raw)
		return ms, ok, ok
	}
	canonical = true
	for {
		if i >= len(raw) || raw[i] != '"' {
			return ms, false, false
		}
		end, escaped, ok := jsonx.CanonicalString(raw, i)
		if !ok || escaped {
			return ms, false, false
		}
		m := rawMember{prefix: keyPrefix(raw[i+1 : end-1]), key: int32(i + 1), keyTo: int32(end - 1)}
		i = jsonx.SkipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return ms, false, false
		}
		start := jsonx.SkipSpace(raw, i+1)
		if end, ok = jsonx.CanonicalValue(raw, start); ok {
			m.val, m.valTo = int32(start), int32(end)
		} else {
			canonical = false
			var err error
			if end, err = jsonx.SkipValue(raw, start); err != nil {
				return ms, false, false
			}
		}
		ms = append(ms, m)
		i = jsonx.SkipSpace(raw, end)
		if i < len(raw) && raw[i] == '}' {
			break
		}
		if i >= len(raw) || raw[i] != ',' {
			return ms, false, false
		}
		i = jsonx.SkipSpace(raw, i+1)
	}
	if jsonx.SkipSpace(raw, i+1) != len(raw) {
		return ms, false, false
	}
	if order != nil {
		order.sort(ms, raw)
	} else {
		sortMembers(ms, raw)
	}
	for n := 1; n < len(ms); n++ { // a repeated key: OPA keeps the last, the plan leaves it to OPA
		if !ms[n-1].less(&ms[n], raw) {
			canonical = false
		}
	}
	return ms, true, canonical
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

// keyOrder remembers a record's keys, in the record's order, and how they
// sort: the records of a source mostly repeat their keys in the same order
// (an SLS log's contents, then the fields of its group), so that the next
// record's members are put in order by comparing its keys with these
// instead of sorting them.
type keyOrder struct {
	keys []byte  // the keys, one after another
	ends []int32 // where each key ends in keys
	perm []int32 // perm[i]: the record-order index of the i-th member sorted
	tmp  []rawMember
}

// sort sorts members (in their record's order) by key, as sortMembers does.
func (o *keyOrder) sort(ms []rawMember, raw []byte) {
	if o.same(ms, raw) {
		o.tmp = append(o.tmp[:0], ms...)
		for i, j := range o.perm {
			ms[i] = o.tmp[j]
		}
		return
	}
	o.keys, o.ends = o.keys[:0], o.ends[:0]
	for _, m := range ms {
		o.keys = append(o.keys, raw[m.key:m.keyTo]...)
		o.ends = append(o.ends, int32(len(o.keys)))
	}
	o.tmp = append(o.tmp[:0], ms...) // in record order: their key offsets ascend
	sortMembers(ms, raw)
	o.perm = o.perm[:0]
	for _, m := range ms {
		j, _ := slices.BinarySearchFunc(o.tmp, m.key, func(x rawMember, key int32) int { return int(x.key - key) })
		o.perm = append(o.perm, int32(j))
	}
}

// same reports whether ms's keys are the remembered ones, in that order.
func (o *keyOrder) same(ms []rawMember, raw []byte) bool {
	if len(ms) != len(o.ends) || len(ms) == 0 {
		return false
	}
	start := int32(0)
	for i, m := range ms {
		if string(raw[m.key:m.keyTo]) != string(o.keys[start:o.ends[i]]) {
			return false
		}
		start = o.ends[i]
	}
	return true
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

// appendMembers writes the sorted members less the keys in drop exactly as
// appendSorted writes the parsed record: a canonical value's text as it
// stands, any other from root, the parsed record (with no repeated key:
// astjson.Plain), which only such a value needs.
func appendMembers(dst, raw []byte, ms []rawMember, drop []string, root *fastjson.Value, members *[]member) []byte {
	dst = append(dst, '{')
	first := true
	for n := range ms {
		m := &ms[n]
		key := raw[m.key:m.keyTo]
		if dropped(drop, key) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, raw[m.key-1:m.keyTo+1]...) // with its quotes
		dst = append(dst, ':')
		if m.valTo != 0 {
			dst = append(dst, raw[m.val:m.valTo]...)
			continue
		}
		o, _ := root.Object()
		dst = appendSorted(dst, o.Get(string(key)), nil, members)
	}
	return append(dst, '}')
}

func dropped(drop []string, key []byte) bool {
	for _, d := range drop {
		if string(key) == d {
			return true
		}
	}
	return false
}
