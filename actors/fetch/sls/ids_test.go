package sls

import (
	"encoding/base64"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	"github.com/gogo/protobuf/proto"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/queue"
)

// subjectRecords reads every RAW message on subject with a fresh consumer
// and counts its records by "seq"; msgs is how many messages it read.
func subjectRecords(t *testing.T, q *queue.Queue, subject string) (seqs map[string]int, msgs int) {
	t.Helper()
	seqs, _, ds := readRaw(t, q, subject)
	return seqs, len(ds)
}

// smallGroups makes n log groups of per audit logs each, seq numbered from
// first*per on.
func smallGroups(first, n, per int) []*sdk.LogGroup {
	r := rand.New(rand.NewPCG(uint64(first), 1))
	var out []*sdk.LogGroup
	for g := first; g < first+n; g++ {
		lg := &sdk.LogGroup{Topic: proto.String("audit_log"), Source: proto.String("10.0.0.1"),
			LogTags: []*sdk.LogTag{{Key: proto.String("__hostname__"), Value: proto.String("ecs-001")}}}
		for i := 0; i < per; i++ {
			lg.Logs = append(lg.Logs, slstest.AuditLog(r, g*per+i, time.Now()))
		}
		out = append(out, lg)
	}
	return out
}

// Two sources may read one logstore with their own consumer groups (other
// policies, other sinks): neither's batches may pass for the other's.
func TestTwoSourcesOnOneLogstoreEachStoreEveryLogGroup(t *testing.T) {
	s := newStandIn(t, 1)
	for _, lg := range smallGroups(0, 10, 4) {
		s.Put(0, lg)
	}
	q := newQueue(t, t.TempDir(), 64<<20)
	start(t, q, testConfig(s, func(c *Config) { c.Name, c.ConsumerGroup = "audit", "sluice" }), "n1")
	start(t, q, testConfig(s, func(c *Config) { c.Name, c.ConsumerGroup = "audit-copy", "sluice-copy" }), "n1")
	waitFor(t, 15*time.Second, "both groups checkpointed to the end", func() bool {
		return s.CheckpointPosition("sluice", 0) == 10 && s.CheckpointPosition("sluice-copy", 0) == 10
	})
	for _, src := range []string{"audit", "audit-copy"} {
		seqs, msgs := subjectRecords(t, q, queue.RawSubject(src))
		if msgs != 10 || len(seqs) != 40 {
			t.Errorf("%s holds %d messages, %d distinct records; want 10 log groups, 40 records", queue.RawSubject(src), msgs, len(seqs))
		}
	}
}

// A log group's ID depends on it alone, not on how pulls were cut: log
// groups read one per pull (tailing) and read again from the start in
// larger pulls (a restart from an older checkpoint) are stored once.
func TestRereadWithOtherPullSizesStoresEachLogGroupOnce(t *testing.T) {
	s := newStandIn(t, 1)
	for _, lg := range smallGroups(0, 10, 2) {
		s.Put(0, lg)
	}
	q := newQueue(t, t.TempDir(), 64<<20)
	first := start(t, q, testConfig(s, func(c *Config) { c.MaxFetchLogGroups = 1 }), "n1")
	waitFor(t, 15*time.Second, "the first read checkpointed to the end", func() bool { return s.CheckpointPosition("sluice", 0) == 10 })
	first.stop(t)
	// The same source read again from the start (a new group starts at
	// begin), three log groups a pull.
	start(t, q, testConfig(s, func(c *Config) { c.ConsumerGroup, c.MaxFetchLogGroups = "again", 3 }), "n1")
	waitFor(t, 15*time.Second, "the re-read checkpointed to the end", func() bool { return s.CheckpointPosition("again", 0) == 10 })
	seqs, msgs := subjectRecords(t, q, queue.RawSubject("audit"))
	if msgs != 10 || len(seqs) != 20 {
		t.Fatalf("RAW holds %d messages (%d distinct records) for 10 log groups of 2", msgs, len(seqs))
	}
}

func TestPlaceOf(t *testing.T) {
	cur := func(p int) string { return base64.StdEncoding.EncodeToString([]byte(strconv.Itoa(p))) }
	for _, tc := range []struct {
		name                    string
		cursor, query, readLast string
		n                       int
		want                    []string // keys of groups 0 and 1
	}{
		{"read last cursor", cur(5), "", "1732154287213232021", 3, []string{"1732154287213232019", "1732154287213232020"}},
		{"start cursor when no read last", cur(1732154287213232019), "", "", 3, []string{"1732154287213232019", "1732154287213232020"}},
		{"start cursor when read last is not a number", cur(7), "", "x", 3, []string{"7", "8"}},
		{"query: start and index", cur(7), "* | where a = 'b'", "20", 2, []string{"7+0", "7+1"}},
		{"cursor that is no position", "not-a-cursor", "", "", 2, []string{"not-a-cursor+0", "not-a-cursor+1"}},
	} {
		p := placeOf(tc.cursor, tc.query, tc.readLast, tc.n)
		if got := []string{p.key(0), p.key(1)}; !slices.Equal(got, tc.want) {
			t.Errorf("%s: keys %q, want %q", tc.name, got, tc.want)
		}
	}
}

// readLastCursor finds the header the SDK keeps unexported, as the
// stand-in sends it.
func TestReadLastCursorFromAPull(t *testing.T) {
	s := newStandIn(t, 1)
	for _, lg := range smallGroups(0, 5, 1) {
		s.Put(0, lg)
	}
	c := sdk.CreateNormalInterface(s.Endpoint, akID, akSecret, "")
	c.SetHTTPClient(s.HTTPClient())
	defer c.Close()
	_, meta, err := c.GetLogsBytesWithQuery(&sdk.PullLogRequest{Project: "proj", Logstore: "audit", ShardID: 0, Cursor: base64.StdEncoding.EncodeToString([]byte("1")), LogGroupMaxCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := readLastCursor(meta); got != "3" {
		t.Fatalf("read last cursor %q, want 3 (groups 1, 2, 3 read)", got)
	}
}
