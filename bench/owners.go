package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/google/pprof/profile"
)

// CPU by owner: each sample of a CPU profile is charged to the innermost
// frame that is neither the Go runtime nor a general-purpose standard
// package, so a copy, an allocation, a hash or a syscall counts for the
// code that asked for it (nats-server's memmove into its block cache is
// nats-server's, the SHA-256 of a policy output is the policy's). This is
// what decides how fast sluice can get by changing its own code.

// ownersCmd prints the CPU by owner of CPU profiles written before:
// go -C bench run . owners FILE.pprof...
func ownersCmd(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: go -C bench run . owners FILE.pprof...")
	}
	for _, path := range args {
		if err := printCPUByOwner(os.Stdout, path); err != nil {
			return err
		}
	}
	return nil
}

// ownerRule names the owner of functions whose name starts with prefix.
type ownerRule struct{ prefix, owner string }

// owners, first match wins. Functions matching none are named by their
// package.
var owners = []ownerRule{
	{"github.com/nats-io/nats-server/", "JetStream server (nats-server)"},
	{"github.com/minio/highwayhash", "JetStream server (nats-server)"},
	{"github.com/nats-io/nats.go", "NATS client (nats.go)"},
	{"github.com/nats-io/nats%2ego", "NATS client (nats.go)"},
	{"github.com/nats-io/nuid", "NATS client (nats.go)"},
	{"github.com/klauspost/compress", "gzip (klauspost/compress)"},
	{"github.com/aliyun/aliyun-log-go-sdk", "SLS SDK (pull, lz4, protobuf)"},
	{"github.com/pierrec/lz4", "SLS SDK (pull, lz4, protobuf)"},
	{"github.com/gogo/protobuf", "SLS SDK (pull, lz4, protobuf)"},
	{"google.golang.org/protobuf", "SLS SDK (pull, lz4, protobuf)"},
	{"github.com/hashicorp/go-retryablehttp", "HEC HTTP client (retryablehttp)"},
	{"net/http.", "HTTP transport (net/http, both clients)"},
	{"net/http/", "HTTP transport (net/http, both clients)"},
	{"net.", "HTTP transport (net/http, both clients)"},
	{"github.com/prometheus/", "metrics (client_golang)"},
	{"github.com/open-policy-agent/opa", "OPA"},
}

// generic are packages that work for their caller: their time is the
// caller's (fastjson is the parser sluice's own code chose).
var generic = []string{
	"github.com/valyala/fastjson",
	"runtime.", "internal/", "syscall.", "os.", "io.", "io/", "sync.", "sync/",
	"bytes.", "strings.", "strconv.", "unicode/", "sort.", "slices.", "maps.",
	"bufio.", "reflect.", "hash/", "crypto/", "encoding/", "math/", "math.",
	"errors.", "fmt.", "time.", "context.", "container/", "weak.", "unique.",
	"indexbytebody", "memeqbody", "aeshashbody", "cmpbody", "gcWriteBarrier", "gosave_systemstack_switch",
}

// ownerOf charges a sample, whose frames run innermost first.
func ownerOf(frames []string) string {
	for _, f := range frames {
		if hasAnyPrefix(f, generic) {
			continue
		}
		for _, r := range owners {
			if strings.HasPrefix(f, r.prefix) {
				return r.owner
			}
		}
		if rest, ok := strings.CutPrefix(f, "github.com/sluicehq/sluice/"); ok {
			return "sluice: " + sluicePackage(rest)
		}
		return "other: " + packageOf(f)
	}
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.gcBgMarkWorker") || strings.HasPrefix(f, "runtime.bgsweep") || strings.HasPrefix(f, "runtime.bgscavenge") {
			return "Go runtime: collector, sweeper, scavenger"
		}
	}
	return "Go runtime: scheduler and the rest"
}

// sluicePackage is a sluice function's package path, "actors/sink/splunk"
// or "rego".
func sluicePackage(name string) string {
	path := packageOf(name)
	if strings.HasPrefix(path, "actors/") {
		if parts := strings.Split(path, "/"); len(parts) > 3 {
			return strings.Join(parts[:3], "/")
		}
	}
	return path
}

// packageOf cuts a function name to its package path.
func packageOf(name string) string {
	slash := strings.LastIndex(name, "/")
	if dot := strings.Index(name[slash+1:], "."); dot >= 0 {
		return name[:slash+1+dot]
	}
	return name
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// ownerShare is one owner's part of a profile.
type ownerShare struct {
	owner string
	nanos int64
}

// cpuByOwner adds up a CPU profile's samples by owner, largest first.
func cpuByOwner(p *profile.Profile) (shares []ownerShare, total int64) {
	value := len(p.SampleType) - 1 // cpu nanoseconds, after the sample count
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			value = i
		}
	}
	byOwner := map[string]int64{}
	var frames []string
	for _, s := range p.Sample {
		frames = frames[:0]
		for _, loc := range s.Location {
			for _, line := range loc.Line { // inlined calls first
				if line.Function != nil {
					frames = append(frames, line.Function.Name)
				}
			}
		}
		v := s.Value[value]
		byOwner[ownerOf(frames)] += v
		total += v
	}
	for o, v := range byOwner {
		shares = append(shares, ownerShare{o, v})
	}
	sort.Slice(shares, func(i, j int) bool {
		if shares[i].nanos != shares[j].nanos {
			return shares[i].nanos > shares[j].nanos
		}
		return shares[i].owner < shares[j].owner
	})
	return shares, total
}

// ownersOf reads the CPU profile at path and adds it up by owner
// (cpuByOwner); a profile with no samples is an error.
func ownersOf(path string) (shares []ownerShare, total int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	shares, total = cpuByOwner(p)
	if total == 0 {
		return nil, 0, fmt.Errorf("%s: no samples", path)
	}
	return shares, total, nil
}

// ownShare is the part of a profile's CPU that sluice's own code takes.
func ownShare(shares []ownerShare, total int64) float64 {
	var own int64
	for _, s := range shares {
		if strings.HasPrefix(s.owner, "sluice: ") {
			own += s.nanos
		}
	}
	return float64(own) / float64(total)
}

// printCPUByOwner prints the profile at path by owner, with sluice's own
// code added up.
func printCPUByOwner(w io.Writer, path string) error {
	shares, total, err := ownersOf(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "CPU by owner (%s, %.2fs sampled; a copy, allocation or syscall counts for the code that asked for it):\n", path, float64(total)/1e9)
	for _, s := range shares {
		if pct := 100 * float64(s.nanos) / float64(total); pct >= 0.5 {
			fmt.Fprintf(w, "  %5.1f %%  %s\n", pct, s.owner)
		}
	}
	fmt.Fprintf(w, "  %5.1f %%  all of sluice's own code together\n", 100*ownShare(shares, total))
	return nil
}

// printBound prints what the profiled run s would have done per core had
// sluice's own code cost nothing: the CPU of everything else (JetStream,
// gzip, the SDK, the runtime) a record, against what a target rate
// allows a record. No change to sluice's code gets a run past this bound.
func printBound(w io.Writer, path string, s span, target goal) error {
	if s.records == 0 || s.bytes == 0 {
		return fmt.Errorf("%s: the run moved no records", path)
	}
	shares, total, err := ownersOf(path)
	if err != nil {
		return err
	}
	own := ownShare(shares, total)
	b := boundOf(s, own)
	fmt.Fprintf(w, "were sluice's own code (%.1f %%) free: %.1f MB/s per core, %.0f records/s per core (now %.1f and %.0f); the rest takes %.2f µs of CPU a record, %s allows %.2f\n",
		100*own, b.mbPerCore, b.recPerCore, s.mbPerCore(), s.recPerCore(), b.restMicros, target, target.microsPerRecord(s))
	return nil
}

// bound is a run's rate with sluice's own code taken out.
type bound struct {
	mbPerCore, recPerCore float64
	restMicros            float64 // everything else's CPU a record
}

func boundOf(s span, own float64) bound {
	rest := s.cpu.Seconds() * (1 - own)
	return bound{
		mbPerCore:  float64(s.bytes) / 1e6 / rest,
		recPerCore: float64(s.records) / rest,
		restMicros: rest / float64(s.records) * 1e6,
	}
}

// goal is a target rate per core: MB/s or, if mb is zero, records/s.
type goal struct{ mb, records float64 }

func (r goal) String() string {
	if r.mb > 0 {
		return fmt.Sprintf("%g MB/s per core", r.mb)
	}
	return fmt.Sprintf("%g records/s per core", r.records)
}

// microsPerRecord is the CPU a record the target allows, for the records
// of run s (their size sets it for a target in MB/s).
func (r goal) microsPerRecord(s span) float64 {
	if r.mb > 0 {
		return float64(s.bytes) / float64(s.records) / (r.mb * 1e6) * 1e6
	}
	return 1e6 / r.records
}
