package sls

import (
	"encoding/json"
	"strconv"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sluicehq/sluice/internal/jsonx"
)

// appendRecord appends one log, as decodeLogGroups left it on the wire, as
// a JSON object of strings, as SLS stores it: the contents, __time__,
// __time_ns_part__, then tail (recordTail: the group's topic, source and
// tags). It returns the log's time too. Built by hand from the protobuf:
// this runs for every record. The log is one decodeLogGroups checked or
// wireLogs wrote, so it holds nothing but a time, contents and the
// nanoseconds.
func appendRecord(dst, tail, log []byte) ([]byte, time.Time) {
	dst = append(dst, '{')
	var sec, ns uint32
	hasNs, n := false, 0
	for len(log) > 0 {
		num, typ, k := protowire.ConsumeTag(log)
		if k < 0 {
			break
		}
		log = log[k:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(log)
			sec, k = uint32(x), m // the SDK keeps the low 32 bits too
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(log)
			if key, value, ok := pairBytes(v); ok {
				if n > 0 {
					dst = append(dst, ',')
				}
				dst = jsonx.AppendBytes(dst, key)
				dst = append(dst, ':')
				dst = jsonx.AppendBytes(dst, value)
				n++
			}
			k = m
		case num == 4 && typ == protowire.Fixed32Type:
			ns, k = protowire.ConsumeFixed32(log)
			hasNs = true
		default:
			k = protowire.ConsumeFieldValue(num, typ, log)
		}
		if k < 0 {
			break
		}
		log = log[k:]
	}
	if n > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"__time__":"`...)
	dst = strconv.AppendUint(dst, uint64(sec), 10)
	dst = append(dst, '"')
	if hasNs {
		dst = append(dst, `,"__time_ns_part__":"`...)
		dst = strconv.AppendUint(dst, uint64(ns), 10)
		dst = append(dst, '"')
	}
	return append(dst, tail...), time.Unix(int64(sec), int64(ns))
}

// wireLogs puts the SDK's logs back on the wire, as decodeLogGroups leaves
// them: for a pull the SDK decoded (decodeLogGroups left it to the SDK, or
// the consumer library pulled without sluice's decoder). Only the fields a
// record holds are written.
func wireLogs(groups []*sdk.LogGroup) [][][]byte {
	logs := make([][][]byte, len(groups))
	for i, lg := range groups {
		for _, l := range lg.Logs {
			b := protowire.AppendTag(nil, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(l.GetTime()))
			for _, c := range l.Contents {
				pair := protowire.AppendTag(nil, 1, protowire.BytesType)
				pair = protowire.AppendString(pair, c.GetKey())
				pair = protowire.AppendTag(pair, 2, protowire.BytesType)
				pair = protowire.AppendString(pair, c.GetValue())
				b = protowire.AppendTag(b, 2, protowire.BytesType)
				b = protowire.AppendBytes(b, pair)
			}
			if l.TimeNs != nil {
				b = protowire.AppendTag(b, 4, protowire.Fixed32Type)
				b = protowire.AppendFixed32(b, l.GetTimeNs())
			}
			logs[i] = append(logs[i], b)
		}
	}
	return logs
}

// recordTail is how every record of lg ends: __topic__, __source__ and
// each tag as __tag__:<key>, then the closing brace. The same for the whole
// group, so it is written once a group, not once a record.
func recordTail(lg *sdk.LogGroup) []byte {
	var b []byte
	field := func(k, v string) {
		b = append(b, ',')
		b = jsonx.AppendString(b, k)
		b = append(b, ':')
		b = jsonx.AppendString(b, v)
	}
	field("__topic__", lg.GetTopic())
	field("__source__", lg.GetSource())
	for _, t := range lg.LogTags {
		field("__tag__:"+t.GetKey(), t.GetValue())
	}
	return append(b, '}')
}

// groupSize estimates the JSON of a group's records, to size their buffer:
// a content's key and value take about as many bytes on the wire as in
// JSON (two tags and two lengths against four quotes, a colon and a comma);
// then each record's time fields and the group's tail (recordTail).
func groupSize(logs [][]byte, tail []byte) int {
	const timeFields = 64 // {"__time__":"…","__time_ns_part__":"…"
	n := 0
	for _, l := range logs {
		n += len(l) + timeFields + len(tail)
	}
	return n
}

// eventJSON is the input of data.event.src for a log group.
func eventJSON(project, logstore string, shard int, lg *sdk.LogGroup) string {
	tags := map[string]string{}
	for _, t := range lg.LogTags {
		tags[t.GetKey()] = t.GetValue()
	}
	b, _ := json.Marshal(map[string]any{
		"project": project, "logstore": logstore, "shard": shard,
		"topic": lg.GetTopic(), "source": lg.GetSource(), "tags": tags,
	})
	return string(b)
}
