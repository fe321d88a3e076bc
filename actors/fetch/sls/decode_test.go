package sls

import (
	"log/slog"
	"runtime"
	"testing"
	"time"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	consumerLibrary "github.com/aliyun/aliyun-log-go-sdk/consumer"
	"github.com/gogo/protobuf/proto"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
)

// pull is a PullLogs response body as the SLS stand-in sends it (after
// lz4): a LogGroupList of generated audit log groups.
func pull(t testing.TB, logs int) []byte {
	b, err := proto.Marshal(&sdk.LogGroupList{LogGroups: slstest.AuditLogGroups(11, logs, time.Unix(1795000000, 0))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// oddPull has everything the fast decoder handles that generated groups
// lack: category, machine UUID, a tag, TimeNs, empty strings, a log with no
// contents, repeated optional fields (the last wins), a group with no logs.
func oddPull(t testing.TB) []byte {
	list := &sdk.LogGroupList{LogGroups: []*sdk.LogGroup{
		{Category: proto.String("c"), MachineUUID: proto.String(""), Topic: proto.String("t"),
			LogTags: []*sdk.LogTag{{Key: proto.String(""), Value: proto.String("v\xff")}},
			Logs: []*sdk.Log{
				{Time: proto.Uint32(1), TimeNs: proto.Uint32(7), Contents: []*sdk.LogContent{{Key: proto.String("k"), Value: proto.String("")}}},
				{Time: proto.Uint32(0)},
			}},
		{},
	}}
	b, err := proto.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	// Field 3 (topic) of the second group, twice: the SDK keeps the last.
	group := protowire.AppendTag(nil, 3, protowire.BytesType)
	group = protowire.AppendString(group, "first")
	group = protowire.AppendTag(group, 3, protowire.BytesType)
	group = protowire.AppendString(group, "second")
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return protowire.AppendBytes(b, group)
}

// sameAsSDK fails unless decodeLogGroups and the SDK's decoder agree on
// data: both fail, or both return the same values, nil slices and pointers
// included, once the logs decodeLogGroups left on the wire are decoded by
// the SDK into their groups; and the records of every log are the same
// bytes whether written from those logs or from the SDK's (wireLogs).
// Unexported fields are not compared: the SDK keeps a key's and a value's
// copies in its LogContent, which the exported pointers point at.
func sameAsSDK(t *testing.T, data []byte) {
	t.Helper()
	got, logs, gotErr := decodeLogGroups(data)
	want, wantErr := sdk.LogsBytesDecode(data)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("decodeLogGroups error %v, the SDK's %v (input %x)", gotErr, wantErr, data)
	}
	if gotErr != nil {
		return
	}
	if logs == nil {
		logs = wireLogs(got.LogGroups) // the SDK decoded it
	} else {
		for i, g := range got.LogGroups {
			if hollow := g.Logs != nil && len(g.Logs) == 0; hollow != (len(logs[i]) > 0) {
				t.Fatalf("group %d: Logs %v with %d logs on the wire: want an empty, non-nil Logs when there are some, else nil", i, g.Logs, len(logs[i]))
			}
			g.Logs = nil
			for _, b := range logs[i] {
				l := &sdk.Log{}
				if err := proto.Unmarshal(b, l); err != nil {
					t.Fatalf("group %d: a log left on the wire does not decode: %v (input %x)", i, err, data)
				}
				g.Logs = append(g.Logs, l)
			}
		}
	}
	exported := cmpopts.IgnoreUnexported(sdk.LogGroup{}, sdk.LogContent{}, sdk.LogTag{})
	if !cmp.Equal(want, got, exported) {
		t.Fatalf("decodeLogGroups and the SDK differ on %x (-sdk +sluice):\n%s", data, cmp.Diff(want, got, exported))
	}
	sdkLogs := wireLogs(want.LogGroups)
	for i, lg := range want.LogGroups {
		tail := recordTail(lg)
		for j := range lg.Logs {
			rec, tm := appendRecord(nil, tail, logs[i][j])
			wantRec, wantTime := appendRecord(nil, tail, sdkLogs[i][j])
			if string(rec) != string(wantRec) || !tm.Equal(wantTime) {
				t.Fatalf("group %d log %d: record %s at %v from the wire, %s at %v from the SDK's log (input %x)", i, j, rec, tm, wantRec, wantTime, data)
			}
		}
	}
}

func TestDecodeLogGroupsTakesTheFastPath(t *testing.T) {
	for name, data := range map[string][]byte{"generated": pull(t, 130), "odd": oddPull(t), "empty": nil} {
		t.Run(name, func(t *testing.T) {
			if _, _, ok := newDecoder(data).list(); !ok {
				t.Fatal("the fast decoder gave up on a well-formed pull")
			}
			sameAsSDK(t, data)
		})
	}
}

func TestDecodeLogGroupsLeavesTheRestToTheSDK(t *testing.T) {
	good := pull(t, 3)
	unknown := protowire.AppendTag(append([]byte(nil), good...), 9, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1)
	content := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "k")
	noValue := protowire.AppendTag(nil, 1, protowire.VarintType)
	noValue = protowire.AppendVarint(noValue, 1)
	noValue = protowire.AppendBytes(protowire.AppendTag(noValue, 2, protowire.BytesType), content)
	content = protowire.AppendString(protowire.AppendTag(content, 2, protowire.BytesType), "v")
	noTime := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), content)
	wrap := func(log []byte) []byte { // in a group in a list
		group := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), log)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), group)
	}
	for name, data := range map[string][]byte{
		"unknown field": unknown, // kept by the SDK in XXX_unrecognized
		"truncated":     good[:len(good)-5],
		"no time":       wrap(noTime),  // required: the SDK fails
		"no value":      wrap(noValue), // required: the SDK fails
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, ok := newDecoder(data).list(); ok {
				t.Fatal("the fast decoder accepted what it should leave to the SDK")
			}
			sameAsSDK(t, data)
		})
	}
}

func FuzzDecodeLogGroups(f *testing.F) {
	f.Add(pull(f, 2))
	f.Add(oddPull(f))
	f.Fuzz(sameAsSDK)
}

func TestDecodePullsWrapsTheConsumersClient(t *testing.T) {
	w := consumerLibrary.InitConsumerWorkerWithProcessor(consumerLibrary.LogHubConfig{
		Endpoint: "127.0.0.1:1", AccessKeyID: "id", AccessKeySecret: "secret", Project: "p", Logstore: "l",
		ConsumerGroupName: "g", ConsumerName: "c", HeartbeatIntervalInSecond: 5, CursorPosition: consumerLibrary.BEGIN_CURSOR,
		Logger: kitLogger{slog.New(slog.DiscardHandler)}, // it tries to reach SLS at once
	}, consumerLibrary.ProcessFunc(func(int, *sdk.LogGroupList, consumerLibrary.CheckPointTracker) (string, error) { return "", nil }))
	if !presetTimeouts(w, time.Second, time.Second) || !decodePulls(w, newPullLogs()) {
		t.Fatal("the consumer library's client could not be reached")
	}
	field, _ := sdkClient(w)
	if _, ok := field.Interface().(pullClient); !ok {
		t.Fatalf("the consumer pulls through %T, not pullClient", field.Interface())
	}
}

// BenchmarkDecodeLogGroups decodes a pull and writes its records, by the
// SDK's decoder and by sluice's.
func BenchmarkDecodeLogGroups(b *testing.B) {
	data := pull(b, 64*16)
	for _, d := range []struct {
		name   string
		decode func([]byte) (*sdk.LogGroupList, [][][]byte, error)
	}{
		{"sdk", func(data []byte) (*sdk.LogGroupList, [][][]byte, error) {
			list, err := sdk.LogsBytesDecode(data)
			if err != nil {
				return nil, nil, err
			}
			return list, wireLogs(list.LogGroups), nil
		}},
		{"sluice", decodeLogGroups},
	} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var arena []byte
			for b.Loop() {
				list, logs, err := d.decode(data)
				if err != nil {
					b.Fatal(err)
				}
				for i, lg := range list.LogGroups {
					tail := recordTail(lg)
					arena = arena[:0]
					for _, l := range logs[i] {
						arena, _ = appendRecord(arena, tail, l)
					}
				}
			}
		})
	}
}

// A pull's logs are found by the list handed to the library while it holds
// the list, and forgotten once it let go; a list the SDK decoded gets its
// own logs back.
func TestPullLogsFollowTheirList(t *testing.T) {
	p := newPullLogs()
	data := pull(t, 70)
	list, logs, err := decodeLogGroups(data)
	if err != nil || logs == nil {
		t.Fatalf("decodeLogGroups: %v (fast path: %v)", err, logs != nil)
	}
	if _, ok := p.get(list, "MTA=", ""); ok {
		t.Fatal("a hollow list whose logs are not kept gave logs")
	}
	p.put(list, pulled{logs: logs, place: place{first: 10, numbered: true}})
	if got, ok := p.get(list, "MTA=", ""); !ok || len(got.logs) != 2 || &got.logs[1][0][0] != &logs[1][0][0] || got.place.key(1) != "11" {
		t.Fatal("the logs kept for a list are not the ones put")
	}
	sdkList, err := sdk.LogsBytesDecode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := p.get(sdkList, "MTA=", ""); !ok || !cmp.Equal(got.logs, wireLogs(sdkList.LogGroups)) || got.place.key(1) != "11" {
		t.Fatalf("a list the SDK decoded got other logs than its own, or another place (%v):\n%s", got.place, cmp.Diff(wireLogs(sdkList.LogGroups), got.logs))
	}
	list = nil
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC()
		p.mu.Lock()
		n := len(p.pulls)
		p.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pulls still kept after their list was collected", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rollbackTracker is a CheckPointTracker whose pull started at cursor "c1"
// and that records saves.
type rollbackTracker struct{ saves int }

func (t *rollbackTracker) GetCheckPoint() string     { return "c0" }
func (t *rollbackTracker) SaveCheckPoint(bool) error { t.saves++; return nil }
func (t *rollbackTracker) GetCurrentCursor() string  { return "c1" }
func (t *rollbackTracker) GetNextCursor() string     { return "c2" }
func (t *rollbackTracker) GetShardId() int           { return 0 }

// A hollow list whose logs are not kept is pulled again from its start,
// neither published (the fetcher has no queue here) nor checkpointed.
func TestProcessPullsAgainWhenTheLogsAreLost(t *testing.T) {
	list, logs, err := decodeLogGroups(pull(t, 10))
	if err != nil || logs == nil {
		t.Fatalf("decodeLogGroups: %v (fast path: %v)", err, logs != nil)
	}
	f := &Fetcher{cfg: &Config{}, log: slog.New(slog.DiscardHandler), wire: newPullLogs()}
	ctx := t.Context()
	f.ctx.Store(&ctx)
	tracker := &rollbackTracker{}
	rollback, err := f.Process(0, list, tracker)
	if err != nil || rollback != "c1" || tracker.saves != 0 {
		t.Fatalf("Process = %q, %v with %d checkpoints saved; want a roll back to c1 and none saved", rollback, err, tracker.saves)
	}
}
