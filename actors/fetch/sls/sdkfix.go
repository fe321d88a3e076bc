package sls

import (
	"reflect"
	"time"
	"unsafe"

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
	cc := reflect.ValueOf(w).Elem().FieldByName("client")
	if !cc.IsValid() || cc.Kind() != reflect.Pointer || cc.IsNil() {
		return false
	}
	iface := cc.Elem().FieldByName("client")
	if !iface.IsValid() || iface.Kind() != reflect.Interface || iface.IsNil() {
		return false
	}
	iface = reflect.NewAt(iface.Type(), unsafe.Pointer(iface.UnsafeAddr())).Elem()
	c, ok := iface.Interface().(*sdk.Client)
	if !ok {
		return false
	}
	c.RequestTimeOut, c.RetryTimeOut = request, retry
	return true
}
