package splunk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/queue/batch"
)

// renderBody is a HEC request as the sink sends it: 500 events, the i-th
// with data(i) as its data.
func renderBody(tb testing.TB, data func(i int) []byte) []byte {
	cfg := &Config{Name: "splunk", Index: "main", Sourcetype: "sls:audit"}
	s := &Sink{cfg: cfg, defaults: newDefaults(cfg)}
	var b []byte
	for i := range 500 {
		o := batch.Output{ID: fmt.Sprintf("sls/p/audit/0/MTcz/%d/%d", i/100, i%100), Timestamp: 1764000000 + float64(i), Data: data(i), Source: "sls:10.0.0.7"}
		rec, err := o.AppendJSON(nil)
		if err != nil {
			tb.Fatal(err)
		}
		if b, err = s.render(b, rec, "", batch.EncodedDataLast); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// body is a HEC request of ~1.2 KB audit events, varied as real ones are.
func body(tb testing.TB) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	return renderBody(tb, func(i int) []byte {
		return []byte(fmt.Sprintf(`{"__source__":"10.0.%d.7","__topic__":"audit_log","action":"%s","event_id":"9f2c4e1d%08x","request_params":"%s","source_ip":"203.0.113.%d","user":"user-%d","user_agent":"aliyun-cli/3.0.204 (linux; amd64) go/1.22"}`,
			i%7, []string{"DeleteBucket", "PutObject", "GetObject"}[i%3], i*7919, params(r), i%250, i%97))
	})
}

// params: 40 key=value pairs, the values random hex like request IDs.
func params(r *rand.Rand) string {
	var b strings.Builder
	for k := range 40 {
		fmt.Fprintf(&b, "param%d=%08x;", k%6, r.Uint32())
	}
	return b.String()
}

// auditBody is a HEC request of events made of the records the SLS
// stand-in generates for the benches (~600 bytes of random hex each, as
// bench's e2e and outage send), or, repetitive, of the same records with
// that hex replaced by a constant, as audit logs that repeat themselves.
func auditBody(tb testing.TB, repetitive bool) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	return renderBody(tb, func(i int) []byte {
		l := slstest.AuditLog(r, i, time.Unix(1764000000, 0).Add(time.Duration(i)*time.Millisecond))
		m := map[string]string{"__topic__": "audit_log", "__source__": "10.1.2.3"}
		for _, c := range l.Contents {
			m[c.GetKey()] = c.GetValue()
			if repetitive && c.GetKey() == "request_params" {
				m[c.GetKey()] = "bucket=logs;acl=private;versioning=enabled;storage_class=standard"
			}
		}
		data, err := json.Marshal(m)
		if err != nil {
			tb.Fatal(err)
		}
		return data
	})
}

// BenchmarkGzip compares the levels the sink could use on a request body:
// MB/s of input per core, and the ratio it gets (reported as ratio), on
// three kinds of events.
func BenchmarkGzip(b *testing.B) {
	bodies := []struct {
		name string
		body []byte
	}{{"varied", body(b)}, {"bench", auditBody(b, false)}, {"repetitive", auditBody(b, true)}}
	for _, in := range bodies {
		for _, level := range []struct {
			name  string
			level int
		}{{"huffman-only", gzip.HuffmanOnly}, {"stateless", gzip.StatelessCompression}, {"1-best-speed", gzip.BestSpeed}, {"2", 2}, {"5-default", gzip.DefaultCompression}} {
			b.Run(in.name+"/"+level.name, func(b *testing.B) {
				var out bytes.Buffer
				zw, _ := gzip.NewWriterLevel(&out, level.level)
				b.SetBytes(int64(len(in.body)))
				for b.Loop() {
					out.Reset()
					zw.Reset(&out)
					_, _ = zw.Write(in.body)
					_ = zw.Close()
				}
				b.ReportMetric(float64(len(in.body))/float64(out.Len()), "ratio")
			})
		}
	}
}

// BenchmarkRender is the sink's work on a record before gzip: reading an
// OUT record the transform wrote and appending its HEC event.
func BenchmarkRender(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	var records [][]byte
	size := 0
	for i := range 500 {
		l := slstest.AuditLog(r, i, time.Unix(1764000000, 0).Add(time.Duration(i)*time.Millisecond))
		m := map[string]string{"__topic__": "audit_log", "__source__": "10.1.2.3"}
		for _, c := range l.Contents {
			m[c.GetKey()] = c.GetValue()
		}
		data, _ := json.Marshal(m)
		o := batch.Output{ID: fmt.Sprintf("sls/p/audit/0/MTcz/%d/%d", i/100, i%100), Timestamp: 1764000000.123 + float64(i), Data: data, Sourcetype: "sls:audit"}
		rec, err := o.AppendJSON(nil)
		if err != nil {
			b.Fatal(err)
		}
		records = append(records, rec)
		size += len(rec)
	}
	cfg := &Config{Name: "splunk", Index: "main"}
	s := &Sink{cfg: cfg, defaults: newDefaults(cfg)}
	var dst []byte
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		dst = dst[:0]
		for _, rec := range records {
			var err error
			if dst, err = s.render(dst, rec, "", batch.EncodedDataLast); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(records)), "ns/record")
}
