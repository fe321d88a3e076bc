package main

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/node"
)

func runCLI(args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestValidateExitsNonZeroNamingTheField(t *testing.T) {
	_, err := runCLI("validate", "--config", "testdata/config/unknown-key.yaml")
	if err == nil || !strings.Contains(err.Error(), "queue.retain_delivred (line 6): unknown key") {
		t.Fatalf("err = %v", err)
	}
	_, err = runCLI("validate", "--config", "testdata/config/missing-file.yaml")
	if err == nil || !strings.Contains(err.Error(), "missing-file.yaml") {
		t.Fatalf("missing file: err = %v", err)
	}
}

// Routes off loopback without TLS are refused, naming the field to set.
func TestValidateRefusesRoutesOffLoopbackWithoutTLS(t *testing.T) {
	_, err := runCLI("validate", "--config", "testdata/config/cluster-no-tls.yaml")
	if err == nil || !strings.Contains(err.Error(), "cluster.tls: required when cluster.listen (0.0.0.0:6222) is not a loopback address") {
		t.Fatalf("err = %v", err)
	}
}

func TestMemoryLimitFromConfigUnlessGOMEMLIMIT(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOMEMLIMIT", "")
	setMemoryLimit(200<<20, log)
	if got := debug.SetMemoryLimit(-1); got != 200<<20 {
		t.Fatalf("limit %d, want %d from node.memory_limit", got, 200<<20)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	setMemoryLimit(100<<20, log)
	if got := debug.SetMemoryLimit(-1); got != 200<<20 {
		t.Fatalf("limit %d: node.memory_limit overrode GOMEMLIMIT", got)
	}
	cfg, err := node.Parse([]byte("node: {data_dir: /tmp/x}\npolicies: {dir: testdata/policies}\n"), node.KnownTypes(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.Node.MemoryLimit != node.DefaultMemoryLimit {
		t.Fatalf("default memory_limit %v", *cfg.Node.MemoryLimit)
	}
}
