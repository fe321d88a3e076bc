package sls

import (
	"encoding/json"
	"strconv"

	sdk "github.com/aliyun/aliyun-log-go-sdk"

	"github.com/sluicehq/sluice/jsonx"
)

// appendRecord appends one log as a JSON object of strings, as SLS stores
// it: the contents, __time__, __time_ns_part__, __topic__, __source__ and
// each tag of its group as __tag__:<key>. Built by hand: this runs for
// every record.
func appendRecord(dst []byte, lg *sdk.LogGroup, l *sdk.Log) []byte {
	dst = append(dst, '{')
	first := true
	field := func(k, v string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = jsonx.AppendString(dst, k)
		dst = append(dst, ':')
		dst = jsonx.AppendString(dst, v)
	}
	for _, c := range l.Contents {
		field(c.GetKey(), c.GetValue())
	}
	field("__time__", strconv.FormatUint(uint64(l.GetTime()), 10))
	if l.TimeNs != nil {
		field("__time_ns_part__", strconv.FormatUint(uint64(l.GetTimeNs()), 10))
	}
	field("__topic__", lg.GetTopic())
	field("__source__", lg.GetSource())
	for _, t := range lg.LogTags {
		field("__tag__:"+t.GetKey(), t.GetValue())
	}
	return append(dst, '}')
}

// groupSize estimates the JSON of a group's records, to size their buffer:
// keys, values and quotes, and the fields every record repeats.
func groupSize(lg *sdk.LogGroup) int {
	perRecord := 96 + len(lg.GetTopic()) + len(lg.GetSource())
	for _, t := range lg.LogTags {
		perRecord += len(t.GetKey()) + len(t.GetValue()) + 16
	}
	n := 0
	for _, l := range lg.Logs {
		n += perRecord
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
