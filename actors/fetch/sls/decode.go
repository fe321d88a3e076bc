package sls

import (
	"unsafe"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeLogGroups decodes a pull's bytes into what the SDK's LogsBytesDecode
// returns, value for value. The SDK's generated decoder allocates three
// objects per field (the LogContent and copies of its key and value), ~2,500
// per log group of 64 audit logs: with the collections they cause, a third
// of the fetch stage's CPU. This one slices every key and value out of the
// pull's bytes and takes the structs from a few large slices. Whatever it
// does not expect (an unknown field, a missing required one, a malformed
// length) is left to the SDK's decoder, so odd input and errors behave
// exactly as before.
//
// The keys and values share data's memory: data must not change afterwards.
// decodeLogGroups owns it: the SDK allocates a pull's buffer per response
// (decompressResponse) and keeps no reference.
func decodeLogGroups(data []byte) (*sdk.LogGroupList, error) {
	if gl, ok := newDecoder(data).list(); ok {
		return gl, nil
	}
	return sdk.LogsBytesDecode(data)
}

type decoder struct {
	data []byte // cap == len, so a subslice's offset is cap(data)-cap(sub)
	text string // data's memory as a string: keys and values are substrings of it

	groups   slab[sdk.LogGroup]
	logs     slab[sdk.Log]
	contents slab[sdk.LogContent]
	tags     slab[sdk.LogTag]
	strs     slab[string]
	nums     slab[uint32]

	groupPtrs   slab[*sdk.LogGroup]
	logPtrs     slab[*sdk.Log]
	contentPtrs slab[*sdk.LogContent]
	tagPtrs     slab[*sdk.LogTag]

	// A message's repeated field is collected here, then copied into its
	// slab once its length is known.
	logScratch     []*sdk.Log
	contentScratch []*sdk.LogContent
	tagScratch     []*sdk.LogTag
}

func newDecoder(data []byte) *decoder {
	return &decoder{data: data[:len(data):len(data)], text: unsafe.String(unsafe.SliceData(data), len(data))}
}

// list decodes a LogGroupList: field 1, its log groups.
func (d *decoder) list() (*sdk.LogGroupList, bool) {
	var groups []*sdk.LogGroup
	for b := d.data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, false
		}
		msg, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, false
		}
		b = b[n+m:]
		g, ok := d.group(msg)
		if !ok {
			return nil, false
		}
		groups = append(groups, g)
	}
	return &sdk.LogGroupList{LogGroups: copyInto(&d.groupPtrs, groups)}, true
}

// group decodes a LogGroup: 1 logs, 2 category, 3 topic, 4 source,
// 5 machine UUID, 6 tags; every field is length-delimited.
func (d *decoder) group(b []byte) (*sdk.LogGroup, bool) {
	g := d.groups.one()
	logs, tags := d.logScratch[:0], d.tagScratch[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return nil, false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, false
		}
		b = b[n+m:]
		switch num {
		case 1:
			l, ok := d.log(v)
			if !ok {
				return nil, false
			}
			logs = append(logs, l)
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
				return nil, false
			}
			t := d.tags.one()
			t.Key, t.Value = key, value
			tags = append(tags, t)
		default:
			return nil, false
		}
	}
	g.Logs, g.LogTags = copyInto(&d.logPtrs, logs), copyInto(&d.tagPtrs, tags)
	d.logScratch, d.tagScratch = logs[:0], tags[:0]
	return g, true
}

// log decodes a Log: 1 time (varint, required), 2 contents, 4 time's
// nanoseconds (fixed32).
func (d *decoder) log(b []byte) (*sdk.Log, bool) {
	l := d.logs.one()
	contents := d.contentScratch[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, false
			}
			b = b[m:]
			l.Time = d.num(uint32(x)) // the SDK keeps the low 32 bits too
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, false
			}
			b = b[m:]
			key, value, ok := d.pair(v)
			if !ok {
				return nil, false
			}
			c := d.contents.one()
			c.Key, c.Value = key, value
			contents = append(contents, c)
		case num == 4 && typ == protowire.Fixed32Type:
			x, m := protowire.ConsumeFixed32(b)
			if m < 0 {
				return nil, false
			}
			b = b[m:]
			l.TimeNs = d.num(x)
		default:
			return nil, false
		}
	}
	if l.Time == nil {
		return nil, false // required: the SDK's decoder says so
	}
	l.Contents = copyInto(&d.contentPtrs, contents)
	d.contentScratch = contents[:0]
	return l, true
}

// pair decodes a LogContent or a LogTag: 1 key, 2 value, both required.
func (d *decoder) pair(b []byte) (key, value *string, ok bool) {
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
			key = d.str(v)
		case 2:
			value = d.str(v)
		default:
			return nil, nil, false
		}
	}
	return key, value, key != nil && value != nil
}

// str is v as a substring of the pull.
func (d *decoder) str(v []byte) *string {
	off := cap(d.data) - cap(v)
	s := d.strs.one()
	*s = d.text[off : off+len(v)]
	return s
}

func (d *decoder) num(x uint32) *uint32 {
	p := d.nums.one()
	*p = x
	return p
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
