package sls

import (
	"reflect"
	"runtime"
	"sync"
	"time"
	"unsafe"
	"weak"

	sdk "github.com/aliyun/aliyun-log-go-sdk"
	consumerLibrary "github.com/aliyun/aliyun-log-go-sdk/consumer"
)

// presetTimeouts works around a data race in aliyun-log-go-sdk v0.1.131:
// every shard worker's first request runs Client.initHttpClient, which
// writes RequestTimeOut and RetryTimeOut under a read lock when they are
// zero, concurrently with the other shard workers. The consumer library
// builds that client privately, so this reaches it by reflection and sets
// both before the worker starts; initHttpClient then only reads them. It
// also makes the timeouts ours. If the library's layout changes, it does
// nothing and says so.
func presetTimeouts(w *consumerLibrary.ConsumerWorker, request, retry time.Duration) bool {
	field, ok := sdkClient(w)
	if !ok {
		return false
	}
	c, ok := field.Interface().(*sdk.Client)
	if !ok {
		return false
	}
	c.RequestTimeOut, c.RetryTimeOut = request, retry
	return true
}

// decodePulls makes the consumer library's pulls decode through
// decodeLogGroups, by wrapping the client it pulls with (reached as
// presetTimeouts reaches it; call that first); each pull's logs are kept in
// wire for Process. If the library's layout changes, it does nothing and
// says so: pulls are then decoded by the SDK.
func decodePulls(w *consumerLibrary.ConsumerWorker, wire *pullLogs) bool {
	field, ok := sdkClient(w)
	if !ok {
		return false
	}
	c, ok := field.Interface().(sdk.ClientInterface)
	if !ok {
		return false
	}
	field.Set(reflect.ValueOf(sdk.ClientInterface(pullClient{c, wire})))
	return true
}

// sdkClient is the worker's ConsumerClient's "client" field (an
// sdk.ClientInterface), made settable.
func sdkClient(w *consumerLibrary.ConsumerWorker) (reflect.Value, bool) {
	cc := reflect.ValueOf(w).Elem().FieldByName("client")
	if !cc.IsValid() || cc.Kind() != reflect.Pointer || cc.IsNil() {
		return reflect.Value{}, false
	}
	iface := cc.Elem().FieldByName("client")
	if !iface.IsValid() || iface.Kind() != reflect.Interface || iface.IsNil() || iface.Type() != reflect.TypeFor[sdk.ClientInterface]() {
		return reflect.Value{}, false
	}
	return reflect.NewAt(iface.Type(), unsafe.Pointer(iface.UnsafeAddr())).Elem(), true
}

// pullClient is the SDK client with PullLogsWithQuery decoding through
// decodeLogGroups. The SDK's own also records each log group's cursor
// (LogGroup.GetCursor, from X-Log-Read-Last-Cursor); this one keeps where
// the pull's groups sit (place) beside their logs instead.
type pullClient struct {
	sdk.ClientInterface
	wire *pullLogs
}

func (c pullClient) PullLogsWithQuery(plr *sdk.PullLogRequest) (*sdk.LogGroupList, *sdk.PullLogMeta, error) {
	out, meta, err := c.GetLogsBytesWithQuery(plr)
	if err != nil {
		return nil, nil, err
	}
	list, logs, err := decodeLogGroups(out)
	if err != nil {
		return nil, nil, err
	}
	c.wire.put(list, pulled{logs: logs, place: placeOf(plr.Cursor, plr.Query, readLastCursor(meta), len(list.LogGroups))})
	return list, meta, nil
}

// pulled is what Process needs of a pull besides its list: the logs
// decodeLogGroups left on the wire (nil when the SDK's decoder decoded
// them) and where its log groups sit in the shard.
type pulled struct {
	logs  [][][]byte
	place place
}

// pullLogs holds what the pull client learnt of each pull, by the list the
// consumer library was handed, until the library lets go of that list:
// Process gets the list back and asks for the rest.
type pullLogs struct {
	mu    sync.Mutex
	pulls map[weak.Pointer[sdk.LogGroupList]]pulled
}

func newPullLogs() *pullLogs {
	return &pullLogs{pulls: map[weak.Pointer[sdk.LogGroupList]]pulled{}}
}

func (p *pullLogs) put(list *sdk.LogGroupList, pl pulled) {
	key := weak.Make(list)
	p.mu.Lock()
	p.pulls[key] = pl
	p.mu.Unlock()
	runtime.AddCleanup(list, p.forget, key)
}

func (p *pullLogs) forget(key weak.Pointer[sdk.LogGroupList]) {
	p.mu.Lock()
	delete(p.pulls, key)
	p.mu.Unlock()
}

// get is list's logs on the wire, log group by log group, and their place:
// those kept at the pull, else the SDK's (wireLogs, and the cursors the SDK
// gave the groups), for a list the SDK decoded; cursor and query are the
// pull's. ok is false for a hollow list (decodeLogGroups) whose logs are
// not kept, which only a bug in sluice would cause: its records are not
// to be had.
func (p *pullLogs) get(list *sdk.LogGroupList, cursor, query string) (_ pulled, ok bool) {
	p.mu.Lock()
	pl, ok := p.pulls[weak.Make(list)]
	p.mu.Unlock()
	if ok {
		if pl.logs == nil {
			pl.logs = wireLogs(list.LogGroups)
		}
		return pl, true
	}
	for _, g := range list.LogGroups {
		if g.Logs != nil && len(g.Logs) == 0 {
			return pulled{}, false
		}
	}
	return pulled{logs: wireLogs(list.LogGroups), place: placeOfSDKList(cursor, query, list.LogGroups)}, true
}
