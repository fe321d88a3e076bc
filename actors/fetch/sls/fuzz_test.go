package sls

import (
	"encoding/json"
	"maps"
	"strconv"
	"testing"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
)

// Whatever a pull's LogGroup holds (any bytes in keys, values, topic,
// tags), each record is a JSON object holding its log's fields (as
// encoding/json would write them), and the event input is valid JSON.
func FuzzLogGroupRecords(f *testing.F) {
	for _, lg := range slstest.AuditLogGroups(7, 3, time.Unix(1795000000, 0)) {
		b, _ := proto.Marshal(lg)
		f.Add(b)
	}
	odd := &sdk.LogGroup{Topic: proto.String("\xff\x00\"\\"), LogTags: []*sdk.LogTag{{Key: proto.String("k\u2028"), Value: proto.String("\xc3")}},
		Logs: []*sdk.Log{{Time: proto.Uint32(1), Contents: []*sdk.LogContent{{Key: proto.String(""), Value: proto.String("\x00\x01")}}}}}
	b, _ := proto.Marshal(odd)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		lg := &sdk.LogGroup{}
		if proto.Unmarshal(data, lg) != nil {
			return
		}
		tail := recordTail(lg)
		for j, wire := range wireLogs([]*sdk.LogGroup{lg})[0] {
			l := lg.Logs[j]
			rec, tm := appendRecord(nil, tail, wire)
			if want := time.Unix(int64(l.GetTime()), int64(l.GetTimeNs())); !tm.Equal(want) {
				t.Fatalf("record %q: time %v, want %v", rec, tm, want)
			}
			var got map[string]string
			if err := json.Unmarshal(rec, &got); err != nil {
				t.Fatalf("record %q is not a JSON object of strings: %v", rec, err)
			}
			if want := wantRecord(lg, l); !maps.Equal(got, want) {
				t.Fatalf("record %q reads as\n%v, want\n%v", rec, got, want)
			}
		}
		if ev := eventJSON("p", "l", 3, lg); !json.Valid([]byte(ev)) {
			t.Fatalf("event %q is not valid JSON", ev)
		}
	})
}

// wantRecord is what a record of l in lg holds, field by field: a later
// field of the same key wins, as it does when the record is read.
func wantRecord(lg *sdk.LogGroup, l *sdk.Log) map[string]string {
	m := map[string]string{}
	set := func(k, v string) { m[asJSON(k)] = asJSON(v) }
	for _, c := range l.Contents {
		set(c.GetKey(), c.GetValue())
	}
	set("__time__", strconv.FormatUint(uint64(l.GetTime()), 10))
	if l.TimeNs != nil {
		set("__time_ns_part__", strconv.FormatUint(uint64(l.GetTimeNs()), 10))
	}
	set("__topic__", lg.GetTopic())
	set("__source__", lg.GetSource())
	for _, t := range lg.LogTags {
		set("__tag__:"+t.GetKey(), t.GetValue())
	}
	return m
}

// asJSON is s as it reads after encoding/json wrote it (invalid UTF-8
// becomes U+FFFD).
func asJSON(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}
