package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// stack is a sample of a synthetic profile: its frames innermost first
// (an entry "a|b" is one location where a was inlined into b) and its CPU
// nanoseconds.
type stack struct {
	frames []string
	nanos  int64
}

func synthetic(stacks []stack) *profile.Profile {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10_000_000,
	}
	funcs := map[string]*profile.Function{}
	fn := func(name string) *profile.Function {
		if f := funcs[name]; f != nil {
			return f
		}
		f := &profile.Function{ID: uint64(len(funcs) + 1), Name: name, SystemName: name}
		funcs[name] = f
		p.Function = append(p.Function, f)
		return f
	}
	for _, st := range stacks {
		s := &profile.Sample{Value: []int64{st.nanos / p.Period, st.nanos}}
		for _, frame := range st.frames {
			loc := &profile.Location{ID: uint64(len(p.Location) + 1)}
			for _, name := range strings.Split(frame, "|") {
				loc.Line = append(loc.Line, profile.Line{Function: fn(name)})
			}
			p.Location = append(p.Location, loc)
			s.Location = append(s.Location, loc)
		}
		p.Sample = append(p.Sample, s)
	}
	return p
}

// writeSynthetic writes a synthetic profile to a file and returns its path.
func writeSynthetic(t *testing.T, stacks []stack) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := synthetic(stacks).Write(f); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCPUByOwnerChargesTheCodeThatAsked(t *testing.T) {
	p := synthetic([]stack{
		// nats-server's copy into its block cache is nats-server's.
		{[]string{"runtime.memmove", "github.com/nats-io/nats-server/v2/server.(*msgBlock).writeMsgRecordLocked", "runtime.goexit"}, 40e6},
		// A policy output's SHA-256 is the policy's, even inlined.
		{[]string{"crypto/internal/fips140/sha256.blockSHANI", "crypto/sha256.Sum256|github.com/sluicehq/sluice/rego.(*Output).complete", "github.com/sluicehq/sluice/actors/transform.(*Transform).handle"}, 30e6},
		// gzip called by the Splunk sink is gzip's.
		{[]string{"github.com/klauspost/compress/flate.(*fastEncL1).Encode", "github.com/sluicehq/sluice/actors/sink/splunk.(*hecClient).encode"}, 20e6},
		// The SDK's io.ReadAll allocation is the SDK's.
		{[]string{"runtime.memclrNoHeapPointers", "runtime.mallocgc", "io.ReadAll", "github.com/aliyun/aliyun-log-go-sdk.(*LogStore).GetLogsBytesWithQuery"}, 10e6},
		// nats.go's symbol names escape the dot of its module.
		{[]string{"github.com/nats-io/nats%2ego.(*Conn).parse"}, 10e6},
		// A sluice package below actors/ is named to its third part.
		{[]string{"github.com/sluicehq/sluice/actors/fetch/sls/slstest.AuditLog"}, 5e6},
		// Nothing but the runtime: the collector, or the rest.
		{[]string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, 15e6},
		{[]string{"runtime.futex", "runtime.findRunnable", "runtime.schedule"}, 5e6},
	})
	shares, total := cpuByOwner(p)
	if total != 135e6 {
		t.Fatalf("total %d ns, want 135e6", total)
	}
	got := map[string]int64{}
	for _, s := range shares {
		got[s.owner] = s.nanos
	}
	want := map[string]int64{
		"JetStream server (nats-server)":            40e6,
		"sluice: rego":                              30e6,
		"gzip (klauspost/compress)":                 20e6,
		"SLS SDK (pull, lz4, protobuf)":             10e6,
		"NATS client (nats.go)":                     10e6,
		"sluice: actors/fetch/sls":                  5e6,
		"Go runtime: collector, sweeper, scavenger": 15e6,
		"Go runtime: scheduler and the rest":        5e6,
	}
	for o, v := range want {
		if got[o] != v {
			t.Errorf("%s: %d ns, want %d (all: %v)", o, got[o], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("owners %v, want exactly %v", got, want)
	}
	if shares[0].owner != "JetStream server (nats-server)" {
		t.Errorf("largest first: got %s first", shares[0].owner)
	}
}

func TestPrintCPUByOwnerReadsAWrittenProfile(t *testing.T) {
	path := writeSynthetic(t, []stack{
		{[]string{"github.com/sluicehq/sluice/jsonx.AppendBytes"}, 30e6},
		{[]string{"github.com/klauspost/compress/flate.(*fastEncL1).Encode"}, 70e6},
	})
	var out bytes.Buffer
	if err := printCPUByOwner(&out, path); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"70.0 %  gzip (klauspost/compress)", "30.0 %  sluice: jsonx", "30.0 %  all of sluice's own code together"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q:\n%s", line, out.String())
		}
	}
}

func TestPrintBoundTakesSluiceOutOfTheRun(t *testing.T) {
	// A quarter of the run in sluice's code, the rest in JetStream.
	path := writeSynthetic(t, []stack{
		{[]string{"github.com/sluicehq/sluice/rego.(*planRun).output"}, 25e6},
		{[]string{"github.com/nats-io/nats-server/v2/server.(*fileStore).StoreMsg"}, 75e6},
	})
	// 90 MB of 90,000 records in 1.2 s of CPU: 75 MB/s per core. Without
	// sluice's quarter: 0.9 s, 100 MB/s per core, 10 µs a record, where
	// 120 MB/s per core allows 1,000 bytes / 120 MB/s = 8.33 µs.
	run := span{cpu: 1200 * time.Millisecond, bytes: 90e6, records: 90_000}
	var out bytes.Buffer
	if err := printBound(&out, path, run, goal{mb: 120}); err != nil {
		t.Fatal(err)
	}
	want := "were sluice's own code (25.0 %) free: 100.0 MB/s per core, 100000 records/s per core (now 75.0 and 75000); the rest takes 10.00 µs of CPU a record, 120 MB/s per core allows 8.33\n"
	if out.String() != want {
		t.Errorf("got  %q\nwant %q", out.String(), want)
	}
	if got := (goal{records: 200_000}).microsPerRecord(run); got != 5 {
		t.Errorf("200,000 records/s per core allows %v µs a record, want 5", got)
	}
}
