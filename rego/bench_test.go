package rego

import (
	"context"
	"strings"
	"testing"
)

// A ~1 KB SLS audit record, as the fetcher writes it.
var auditRecord = []byte(`{"seq":"42","event_id":"9f2c4e1d7a6b3c58-1a2b3c4d","event_time":"2026-11-24T00:00:00.042Z","user":"alice","user_type":"RamUser","action":"DeleteBucket","resource":"acs:oss:cn-hangzhou:1234567890:bucket/alice-data-7","source_ip":"203.0.113.7","user_agent":"aliyun-cli/3.0.204 (linux; amd64) go/1.22","region":"cn-hangzhou","result":"success","request_id":"0A1B2C3D-1234-5678-9ABC-0123456789AB","request_params":"` + strings.Repeat("param1=abcdef12;", 30) + `","__time__":"1764000000","__time_ns_part__":"42000000","__topic__":"audit_log","__source__":"10.0.0.7","__tag__:__hostname__":"ecs-007","__tag__:__receive_time__":"1764000000"}`)

func BenchmarkOutputsDefaultPolicy(b *testing.B) { benchOutputs(b, false) }

// The same through OPA's evaluator: what a policy without a plan costs.
func BenchmarkOutputsDefaultPolicyOPA(b *testing.B) { benchOutputs(b, true) }

func benchOutputs(b *testing.B, fullEval bool) {
	e, err := Load(defaults, Options{FullEval: fullEval})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(len(auditRecord)))
	b.ResetTimer()
	var data []byte
	for i := 0; i < b.N; i++ {
		outs, err := e.OutputsInto(ctx, "sls_audit", auditRecord, &data) // as the transform calls it
		if err != nil || len(outs) != 1 {
			b.Fatal(err)
		}
	}
}
