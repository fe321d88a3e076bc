package slstest

import (
	"strconv"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/pierrec/lz4/v4"
)

// The stand-in's PutLogs decoding takes any body and size header: a
// LogGroup or a 400, never a panic or an allocation the header dictates.
func FuzzPutLogsBody(f *testing.F) {
	lg := AuditLogGroups(1, 3, time.Unix(1795000000, 0))[0]
	raw, _ := proto.Marshal(lg)
	comp := make([]byte, lz4.CompressBlockBound(len(raw)))
	n, _ := lz4.CompressBlock(raw, comp, nil)
	f.Add(raw, "", "")
	f.Add(comp[:n], "lz4", strconv.Itoa(len(raw)))
	f.Add(comp[:n], "lz4", "99999999999")
	f.Add(comp[:n], "lz4", "-1")
	f.Add([]byte{0x0a, 0xff, 0xff}, "", "")
	f.Fuzz(func(t *testing.T, body []byte, compress, size string) {
		got, err := decodeLogGroup(body, compress, size)
		if err == nil && got == nil {
			t.Fatal("no LogGroup and no error")
		}
		if err != nil && err.status != 400 {
			t.Fatalf("status %d for a bad body", err.status)
		}
	})
}
