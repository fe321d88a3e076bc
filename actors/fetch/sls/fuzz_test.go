package sls

import (
	"encoding/json"
	"testing"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
)

// Whatever a pull's LogGroup holds (any bytes in keys, values, topic,
// tags), each record and the event input are valid JSON.
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
		for _, l := range lg.Logs {
			rec := appendRecord(nil, lg, l)
			if !json.Valid(rec) {
				t.Fatalf("record %q is not valid JSON", rec)
			}
		}
		if ev := eventJSON("p", "l", 3, lg); !json.Valid([]byte(ev)) {
			t.Fatalf("event %q is not valid JSON", ev)
		}
	})
}
