package sls

import (
	"unsafe"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeLogGroups decodes a pull's bytes into what the SDK's LogsBytesDecode
// returns, value for value, but for each group's Logs: those stay on the
// wire, logs[i][j] being the protobuf of group i's log j, which
// appendRecord turns into a record as it reads it, and the group's Logs is
// left empty but not nil (hollow), which the SDK never leaves it. The
// SDK's generated decoder allocates a Log and, per field, a LogContent and
// copies of its key and value, ~2,500 objects per log group of 64 audit logs, only for
// them to be written out as JSON at once. This one checks each log as the
// SDK would and slices it out of the pull; the rest of a group (topic,
// source, tags) it decodes as the SDK does, slicing every string out of the
// pull and taking the structs from a few large slices. Whatever it does not
// expect (an unknown field, a missing required one, a malformed length) is
// left to the SDK's decoder, so odd input and errors behave exactly as
// before: it then returns the SDK's list, whose logs are whole, and nil logs.
//
// The strings and logs share data's memory: data must not change
// afterwards. decodeLogGroups owns it: the SDK allocates a pull's buffer per
// response (decompressResponse) and keeps no reference.
func decodeLogGroups(data []byte) (list *sdk.LogGroupList, logs [][][]byte, err error) {
	if gl, logs, ok := newDecoder(data).list(); ok {
		return gl, logs, nil
	}
	gl, err := sdk.LogsBytesDecode(data)
	return gl, nil, err
}

type decoder struct {
	data []byte // cap == len, so a subslice's offset is cap(data)-cap(sub)
	text string // data's memory as a string: keys and values are substrings of it

	groups slab[sdk.LogGroup]
	tags   slab[sdk.LogTag]
	strs   slab[string]
	logs   slab[[]byte]

	groupPtrs slab[*sdk.LogGroup]
	tagPtrs   slab[*sdk.LogTag]

	// A group's logs and tags are collected here, then copied into their
	// slab once their number is known.
	logScratch [][]byte
	tagScratch []*sdk.LogTag
}

func newDecoder(data []byte) *decoder {
	return &decoder{data: data[:len(data):len(data)], text: unsafe.String(unsafe.SliceData(data), len(data))}
}

// list decodes a LogGroupList: field 1, its log groups.
func (d *decoder) list() (*sdk.LogGroupList, [][][]byte, bool) {
	var groups []*sdk.LogGroup
	var logs [][][]byte
	for b := d.data; len(b) > 0; {
		num, msg, rest, ok := bytesField(b)
		if !ok || num != 1 {
			return nil, nil, false
		}
		b = rest
		g, gl, ok := d.group(msg)
		if !ok {
			return nil, nil, false
		}
		groups, logs = append(groups, g), append(logs, gl)
	}
	return &sdk.LogGroupList{LogGroups: copyInto(&d.groupPtrs, groups)}, logs, true
}

// group decodes a LogGroup but its logs: 1 logs, 2 category, 3 topic,
// 4 source, 5 machine UUID, 6 tags; every field is length-delimited.
func (d *decoder) group(b []byte) (*sdk.LogGroup, [][]byte, bool) {
	g := d.groups.one()
	logs, tags := d.logScratch[:0], d.tagScratch[:0]
	for len(b) > 0 {
		num, v, rest, ok := bytesField(b)
		if !ok {
			return nil, nil, false
		}
		b = rest
		switch num {
		case 1:
			if !validLog(v) {
				return nil, nil, false
			}
			logs = append(logs, v)
		case 2:
			g.Category = d.str(v)
		case 3:
			g.Topic = d.str(v)
		case 4:
			g.Source = d.str(v)
		case 5:
			g.MachineUUID = d.str(v)
		case 6:
			key, value, ok := d.pair(v)
			if !ok {
				return nil, nil, false
			}
			t := d.tags.one()
			t.Key, t.Value = key, value
			tags = append(tags, t)
		default:
			return nil, nil, false
		}
	}
	g.LogTags = copyInto(&d.tagPtrs, tags)
	if len(logs) > 0 {
		g.Logs = []*sdk.Log{} // hollow: the SDK leaves no logs nil, never empty
	}
	d.logScratch, d.tagScratch = logs[:0], tags[:0]
	return g, copyInto(&d.logs, logs), true
}

// validLog says whether the SDK would decode b as a Log holding nothing it
// does not know: 1 time (varint, required), 2 contents (each a key and a
// value), 4 time's nanoseconds (fixed32).
func validLog(b []byte) bool {
	hasTime := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		var m int
		switch {
		case num == 1 && typ == protowire.VarintType:
			_, m = protowire.ConsumeVarint(b)
			hasTime = true
		case num == 2 && typ == protowire.BytesType:
			var v []byte
			if v, m = protowire.ConsumeBytes(b); m >= 0 {
				if _, _, ok := pairBytes(v); !ok {
					return false
				}
			}
		case num == 4 && typ == protowire.Fixed32Type:
			_, m = protowire.ConsumeFixed32(b)
		default:
			return false
		}
		if m < 0 {
			return false
		}
		b = b[m:]
	}
	return hasTime // required: the SDK's decoder says so
}

// pair decodes a LogTag into strings of the pull.
func (d *decoder) pair(b []byte) (key, value *string, ok bool) {
	k, v, ok := pairBytes(b)
	if !ok {
		return nil, nil, false
	}
	return d.str(k), d.str(v), true
}

// pairBytes is a LogContent's or LogTag's key and value (the last of each,
// as the SDK keeps): 1 key, 2 value, both required. ok is false unless it
// holds both and nothing else. It reads its fields itself rather than
// through bytesField, which is too large to inline: it runs twice for every
// field of every log, and the call cost 8 % of decoding a pull.
func pairBytes(b []byte) (key, value []byte, ok bool) {
	var hasKey, hasValue bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return nil, nil, false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, nil, false
		}
		b = b[n+m:]
		switch num {
		case 1:
			key, hasKey = v, true
		case 2:
			value, hasValue = v, true
		default:
			return nil, nil, false
		}
	}
	return key, value, hasKey && hasValue
}

// bytesField splits off the field at the start of b, which must be
// length-delimited: its number, its value and what follows. ok is false for
// another wire type or a malformed tag or length.
func bytesField(b []byte) (num protowire.Number, v, rest []byte, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || typ != protowire.BytesType {
		return 0, nil, nil, false
	}
	v, m := protowire.ConsumeBytes(b[n:])
	if m < 0 {
		return 0, nil, nil, false
	}
	return num, v, b[n+m:], true
}

// str is v as a substring of the pull.
func (d *decoder) str(v []byte) *string {
	off := cap(d.data) - cap(v)
	s := d.strs.one()
	*s = d.text[off : off+len(v)]
	return s
}

// slab hands out values from a few large slices instead of one allocation
// each. Its chunks grow from 16 to 4,096 values, so a pull of one log
// allocates little and a pull of thousands allocates a handful of times.
type slab[T any] struct {
	free  []T
	chunk int
}

func (s *slab[T]) take(n int) []T {
	if n == 0 {
		return nil // as the SDK leaves an empty repeated field
	}
	if len(s.free) < n {
		s.chunk = min(max(2*s.chunk, 16), 4096)
		s.free = make([]T, max(n, s.chunk))
	}
	t := s.free[:n:n]
	s.free = s.free[n:]
	return t
}

func (s *slab[T]) one() *T { return &s.take(1)[0] }

// copyInto copies a collected repeated field into its slab.
func copyInto[T any](s *slab[T], from []T) []T {
	to := s.take(len(from))
	copy(to, from)
	return to
}
