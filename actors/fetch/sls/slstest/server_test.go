package slstest

import (
	"testing"
	"time"

	sls "github.com/aliyun/aliyun-log-go-sdk"
)

// TrimConsumed drops only what every consumer group has checkpointed past,
// and positions stay valid for the SDK afterwards.
func TestTrimConsumedKeepsUnreadGroups(t *testing.T) {
	s, err := NewServer(Options{Project: "p", Logstore: "l", Shards: 1, AccessKeyID: "ak", AccessKeySecret: "sk", TrimConsumed: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 10; i++ { // ten log groups of one log each
		s.PutAt(0, AuditLogGroups(uint64(i), 1, time.Now())[0], time.Now().Add(-time.Hour))
	}
	if s.Logs() != 10 {
		t.Fatalf("preloaded %d logs", s.Logs())
	}
	c := &sls.Client{Endpoint: s.Endpoint[len("http://"):], AccessKeyID: "ak", AccessKeySecret: "sk", HTTPClient: s.HTTPClient()}
	for _, g := range []string{"a", "b"} {
		if err := c.CreateConsumerGroup("p", "l", sls.ConsumerGroup{ConsumerGroupName: g, Timeout: 60}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.HeartBeat("p", "l", g, "c1", []int{0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.UpdateCheckpoint("p", "l", "a", "c1", 0, encodeCursor(6), true); err != nil {
		t.Fatal(err)
	}
	if s.Logs() != 10 {
		t.Fatalf("group b never checkpointed, yet %d of 10 logs are left", s.Logs())
	}
	if err := c.UpdateCheckpoint("p", "l", "b", "c1", 0, encodeCursor(4), true); err != nil {
		t.Fatal(err)
	}
	if s.Logs() != 6 {
		t.Fatalf("after checkpoints at 6 and 4: %d logs left, want 6", s.Logs())
	}
	if s.LogGroups(0) != 10 {
		t.Fatalf("LogGroups counts %d, want every group ever put (10)", s.LogGroups(0))
	}
	begin, err := c.GetCursor("p", "l", 0, "begin")
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := decodeCursor(begin); p != 4 {
		t.Fatalf("begin is at %d after trimming, want 4", p)
	}
	gl, next, err := c.PullLogs("p", "l", 0, begin, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(gl.LogGroups) != 6 || next != encodeCursor(10) {
		t.Fatalf("pull from begin: %d groups, next %q", len(gl.LogGroups), next)
	}
	if _, _, err := c.PullLogs("p", "l", 0, encodeCursor(1), "", 100); err == nil {
		t.Fatal("a pull from a trimmed position succeeded")
	}
}
