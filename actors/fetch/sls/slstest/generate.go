package slstest

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"
)

// Topics of the generated log groups and how often each occurs: the default
// policy keeps audit_log and drops the others.
var topicMix = []struct {
	topic  string
	weight int
}{{"audit_log", 60}, {"operation_log", 25}, {"access_log", 15}}

// GroupSize is how many logs a generated log group holds.
const GroupSize = 64

var (
	users   = []string{"alice", "bob", "carol", "dave", "erin", "mallory", "svc-backup", "svc-ci"}
	actions = []string{"CreateBucket", "DeleteBucket", "PutObjectAcl", "AttachPolicy", "CreateAccessKey", "ConsoleLogin", "ModifySecurityGroup", "StopInstance"}
	regions = []string{"cn-hangzhou", "cn-shanghai", "ap-southeast-1", "eu-central-1"}
)

// AuditLogGroups makes n audit-style logs (about 1 KB each) in log groups
// of GroupSize, deterministically from seed. Each log carries "seq", its
// place in 0..n-1, so tests can check that every record arrived once.
func AuditLogGroups(seed uint64, n int, start time.Time) []*sls.LogGroup {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var groups []*sls.LogGroup
	for seq := 0; seq < n; {
		topic := pickTopic(r)
		host := fmt.Sprintf("ecs-%03d", r.IntN(40))
		lg := &sls.LogGroup{
			Topic:   proto.String(topic),
			Source:  proto.String(fmt.Sprintf("10.%d.%d.%d", r.IntN(255), r.IntN(255), r.IntN(255))),
			LogTags: []*sls.LogTag{{Key: proto.String("__hostname__"), Value: proto.String(host)}, {Key: proto.String("__receive_time__"), Value: proto.String(strconv.FormatInt(start.Unix(), 10))}},
		}
		for i := 0; i < GroupSize && seq < n; i, seq = i+1, seq+1 {
			lg.Logs = append(lg.Logs, AuditLog(r, seq, start.Add(time.Duration(seq)*time.Millisecond)))
		}
		groups = append(groups, lg)
	}
	return groups
}

func pickTopic(r *rand.Rand) string {
	x := r.IntN(100)
	for _, t := range topicMix {
		if x < t.weight {
			return t.topic
		}
		x -= t.weight
	}
	return topicMix[0].topic
}

// AuditLog makes one audit-style log of about 1 KB with "seq" set to seq.
func AuditLog(r *rand.Rand, seq int, t time.Time) *sls.Log {
	kv := func(k, v string) *sls.LogContent {
		return &sls.LogContent{Key: proto.String(k), Value: proto.String(v)}
	}
	user := users[r.IntN(len(users))]
	action := actions[r.IntN(len(actions))]
	contents := []*sls.LogContent{
		kv("seq", strconv.Itoa(seq)),
		kv("event_id", fmt.Sprintf("%016x-%08x", r.Uint64(), r.Uint32())),
		kv("event_time", t.UTC().Format(time.RFC3339Nano)),
		kv("user", user),
		kv("user_type", "RamUser"),
		kv("action", action),
		kv("resource", fmt.Sprintf("acs:oss:%s:1234567890:bucket/%s-data-%d", regions[r.IntN(len(regions))], user, r.IntN(100))),
		kv("source_ip", fmt.Sprintf("203.0.%d.%d", r.IntN(255), r.IntN(255))),
		kv("user_agent", "aliyun-cli/3.0.204 (linux; amd64) go/1.22"),
		kv("region", regions[r.IntN(len(regions))]),
		kv("result", []string{"success", "success", "success", "denied"}[r.IntN(4)]),
		kv("request_id", fmt.Sprintf("%08X-%04X-%04X-%04X-%012X", r.Uint32(), r.IntN(65536), r.IntN(65536), r.IntN(65536), r.Uint64()&0xffffffffffff)),
	}
	// Pad with request detail so a log is about 1 KB, as audit logs are.
	size := 0
	for _, c := range contents {
		size += len(c.GetKey()) + len(c.GetValue()) + 8
	}
	if pad := 1000 - size; pad > 0 {
		var b strings.Builder
		for b.Len() < pad {
			fmt.Fprintf(&b, "param%d=%x;", r.IntN(100), r.Uint32())
		}
		contents = append(contents, kv("request_params", b.String()[:pad]))
	}
	return &sls.Log{Time: proto.Uint32(uint32(t.Unix())), TimeNs: proto.Uint32(uint32(t.Nanosecond())), Contents: contents}
}

// Preload puts n generated audit logs into the shards, round robin by log
// group, received at their logs' time.
func (s *Server) Preload(seed uint64, n int, start time.Time) {
	for i, lg := range AuditLogGroups(seed, n, start) {
		s.PutAt(i%len(s.shards), lg, time.Unix(int64(lg.Logs[0].GetTime()), 0))
	}
}

// EscapedLog makes a log with "seq" and a "blob" of n control characters,
// each of which JSON writes as \u00XX: its record is over 6n bytes, from
// about n on the wire (and in PutLogs), the way a record outgrows the
// buffer's largest message while SLS took it without a word.
func EscapedLog(seq, n int, t time.Time) *sls.Log {
	return &sls.Log{Time: proto.Uint32(uint32(t.Unix())), Contents: []*sls.LogContent{
		{Key: proto.String("seq"), Value: proto.String(strconv.Itoa(seq))},
		{Key: proto.String("blob"), Value: proto.String(strings.Repeat("\x01", n))},
	}}
}

// AuditSeqs is the seq of every log of groups whose topic is audit_log:
// what the default policies (testdata/policies) send to Splunk.
func AuditSeqs(groups []*sls.LogGroup) map[string]bool {
	want := map[string]bool{}
	for _, lg := range groups {
		if lg.GetTopic() != "audit_log" {
			continue
		}
		for _, l := range lg.Logs {
			for _, c := range l.Contents {
				if c.GetKey() == "seq" {
					want[c.GetValue()] = true
				}
			}
		}
	}
	return want
}
