package sls

import (
	"encoding/json"
	"strconv"

	sdk "github.com/aliyun/aliyun-log-go-sdk"

	"github.com/sluicehq/sluice/jsonx"
)

// appendRecord appends one log as a JSON object of strings, as SLS stores
// it: the contents, __time__, __time_ns_part__, then tail (recordTail: the
// group's topic, source and tags). Built by hand: this runs for every
// record.
func appendRecord(dst, tail []byte, l *sdk.Log) []byte {
	dst = append(dst, '{')
	for i, c := range l.Contents {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonx.AppendString(dst, c.GetKey())
		dst = append(dst, ':')
		dst = jsonx.AppendString(dst, c.GetValue())
	}
	if len(l.Contents) > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"__time__":"`...)
	dst = strconv.AppendUint(dst, uint64(l.GetTime()), 10)
	dst = append(dst, '"')
	if l.TimeNs != nil {
		dst = append(dst, `,"__time_ns_part__":"`...)
		dst = strconv.AppendUint(dst, uint64(l.GetTimeNs()), 10)
		dst = append(dst, '"')
	}
	return append(dst, tail...)
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
// each record's keys, values and quotes, its time fields, and the group's
// tail (recordTail) it ends with.
func groupSize(lg *sdk.LogGroup, tail []byte) int {
	const timeFields = 64 // {"__time__":"…","__time_ns_part__":"…"
	n := 0
	for _, l := range lg.Logs {
		n += timeFields + len(tail)
		for _, c := range l.Contents {
			n += len(c.GetKey()) + len(c.GetValue()) + 6
		}
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
