package cmd

import (
	"bytes"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/node/ops"
)

func runCLI(args ...string) (string, error) {
	cmd := newRootCmd(testPolicies)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestValidateExitsNonZeroNamingTheField(t *testing.T) {
	_, err := runCLI("validate", "--config", "../testdata/config/unknown-key.yaml")
	if err == nil || !strings.Contains(err.Error(), "queue.retain_delivred (line 6): unknown key") {
		t.Fatalf("err = %v", err)
	}
	_, err = runCLI("validate", "--config", "../testdata/config/missing-file.yaml")
	if err == nil || !strings.Contains(err.Error(), "missing-file.yaml") {
		t.Fatalf("missing file: err = %v", err)
	}
}

// Routes off loopback without TLS are refused, naming the field to set.
func TestValidateRefusesRoutesOffLoopbackWithoutTLS(t *testing.T) {
	_, err := runCLI("validate", "--config", "../testdata/config/cluster-no-tls.yaml")
	if err == nil || !strings.Contains(err.Error(), "cluster.tls: required when cluster.listen (0.0.0.0:6222) is not a loopback address") {
		t.Fatalf("err = %v", err)
	}
}

// An insecure choice validate accepts is one warning line each, and the
// config is still ok (exit 0); no secret's value is printed.
func TestValidateWarnsAboutEachInsecureChoice(t *testing.T) {
	t.Setenv("SPLUNK_HEC_TOKEN", "env-hec-token")
	path := "../testdata/config/good-insecure.yaml"
	out, err := runCLI("validate", "--config", path)
	if err != nil {
		t.Fatalf("err = %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"node.admin_token (line 6)", "node.nats_token (line 8)", "node.insecure (line 9)", "cluster.insecure (line 16)",
		"sources[0].endpoint (line 20)", "sources[0].access_key_secret (line 25)", "sinks[0].token (line 30)",
		"sinks[0].tls.insecure_skip_verify (line 31)", "sinks[1].url (line 34)", "sinks[2].endpoint (line 39)", "sinks[2].write_endpoint (line 40)"}
	if len(lines) != len(want)+1 || lines[len(want)] != path+": ok" {
		t.Fatalf("want %d warning lines then ok, got:\n%s", len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], path+": warning: "+w+": ") {
			t.Errorf("line %d: %s\n want a warning for %s", i+1, lines[i], w)
		}
	}
	if strings.Contains(out, "literal-") || strings.Contains(out, "env-hec-token") {
		t.Errorf("a secret in the output:\n%s", out)
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
	cfg, err := node.Parse([]byte("node: {data_dir: /tmp/x}\npolicies: {dir: testdata/policies}\n"), builtin.Registry(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.Node.MemoryLimit != node.DefaultMemoryLimit {
		t.Fatalf("default memory_limit %v", *cfg.Node.MemoryLimit)
	}
}

// A protection the config turned off heads the status screen.
func TestStatusShowsInsecureSettingsFirst(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, &ops.Status{Node: "node-1", Insecure: []ops.InsecureSetting{{What: "cluster_routes", Setting: "cluster.insecure", On: true}}})
	lines := strings.Split(b.String(), "\n")
	if want := "INSECURE cluster_routes: cluster.insecure is true"; len(lines) < 2 || !strings.HasPrefix(lines[1], want) {
		t.Fatalf("status:\n%s\nwant its second line to start %q", b.String(), want)
	}
}

// testPolicies are the policies `sluice dev` starts with in the tests: the
// ones main.go embeds.
var testPolicies = os.DirFS("../testdata/policies")
