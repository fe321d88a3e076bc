package node

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/internal/conf"
)

// Every insecure choice a config may make is one warning naming its field
// and line, in file order; a secret's value never appears in one.
func TestWarningsNameEveryInsecureChoice(t *testing.T) {
	t.Setenv("SPLUNK_HEC_TOKEN", "env-hec-token")
	cfg, err := Load("../testdata/config/good-insecure.yaml", builtin.Registry())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"node.admin_token (line 6): a secret written in the file",
		"node.nats_token (line 8): a secret written in the file",
		"node.insecure (line 9): true: the admin API and the NATS client port serve cleartext",
		"cluster.insecure (line 16): true: routes run without TLS",
		"sources[0].endpoint (line 20): http off loopback",
		"sources[0].access_key_secret (line 25): a secret written in the file",
		"sinks[0].token (line 30): a secret written in the file",
		"sinks[0].tls.insecure_skip_verify (line 31): true: any certificate passes",
		"sinks[1].url (line 34): http off loopback",
		"sinks[2].endpoint (line 39): an emulator off loopback",
		"sinks[2].write_endpoint (line 40): off loopback",
	}
	ws := cfg.Warnings()
	for i, w := range ws {
		if i >= len(want) || !strings.HasPrefix(w.String(), want[i]) {
			t.Errorf("warning %d: %s", i, w)
		}
		for _, secret := range []string{"literal-", "env-hec-token"} {
			if strings.Contains(w.String(), secret) {
				t.Errorf("warning %d shows a secret: %s", i, w)
			}
		}
	}
	if len(ws) != len(want) {
		t.Fatalf("%d warnings, want %d:\n%s", len(ws), len(want), fmt.Sprint(ws))
	}
	if got := fmt.Sprint(cfg.InsecureSettings()); got != "[{cluster_routes cluster.insecure true} {client_listeners node.insecure true} {admin_writes node.admin_loopback_writes false}]" {
		t.Errorf("InsecureSettings() = %s", got)
	}
}

// The secure way to write each of those makes no warning.
func TestSecureConfigHasNoWarnings(t *testing.T) {
	t.Setenv("SPLUNK_HEC_TOKEN", "s3cr3t-token")
	t.Setenv("SLS_AK_ID", "id")
	t.Setenv("SLS_AK_KEY", "key")
	for _, f := range []string{"../testdata/config/good-full.yaml", "../testdata/config/good-splunk.yaml"} {
		cfg, err := Load(f, builtin.Registry())
		if err != nil {
			t.Fatal(err)
		}
		if ws := cfg.Warnings(); len(ws) != 0 {
			t.Errorf("%s: warnings %v", f, ws)
		}
	}
	src := `
node: {name: n1, data_dir: /tmp/d, admin_listen: "127.0.0.1:8686", admin_token: "${ADMIN}"}
cluster: {name: c, listen: "127.0.0.1:6222", peers: ["127.0.0.1:6222"]}
sinks:
  - {name: local, type: splunk_hec, url: "http://127.0.0.1:8088", token: "Splunk ${HEC}"}
  - {name: bq, type: bigquery, project: p, endpoint: "http://localhost:9050", write_endpoint: "127.0.0.1:9060"}
`
	env := func(k string) (string, bool) { return "v-" + k, true }
	cfg, err := Parse([]byte(src), builtin.Registry(), env)
	if err != nil {
		t.Fatal(err)
	}
	if ws := cfg.Warnings(); len(ws) != 0 {
		t.Errorf("loopback routes, loopback http, env secrets: warnings %v", ws)
	}
	if got := fmt.Sprint(cfg.InsecureSettings()); got != "[{cluster_routes cluster.insecure false} {client_listeners node.insecure false} {admin_writes node.admin_loopback_writes false}]" {
		t.Errorf("InsecureSettings() = %s", got)
	}
}

// Routes off loopback need cluster.tls or, by name, cluster.insecure.
func TestRoutesOffLoopbackNeedTLSOrInsecure(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	for listen, want := range map[string]string{
		"127.0.0.1:6222":  "",
		"localhost:6222":  "",
		"0.0.0.0:6222":    "cluster.tls: required when cluster.listen (0.0.0.0:6222)",
		":6222":           "cluster.tls: required when cluster.listen (:6222)",
		"10.0.0.11:6222":  "cluster.tls: required when cluster.listen (10.0.0.11:6222)",
		"node-1.lan:6222": "cluster.tls: required when cluster.listen (node-1.lan:6222)",
	} {
		src := fmt.Sprintf("cluster: {name: c, listen: %q, peers: [%q]}\n", listen, listen)
		_, err := Parse([]byte(src), builtin.Registry(), none)
		if got := fmt.Sprint(err); (want == "" && err != nil) || (want != "" && !strings.Contains(got, want)) {
			t.Errorf("listen %s: err = %v, want %q", listen, err, want)
		}
		cfg, err := Parse([]byte(src[:len(src)-2]+", insecure: true}\n"), builtin.Registry(), none)
		if err != nil {
			t.Errorf("listen %s with insecure: true: %v", listen, err)
			continue
		}
		if ws := cfg.Warnings(); len(ws) != 1 || ws[0].Path != "cluster.insecure" || ws[0].Line != 1 {
			t.Errorf("listen %s with insecure: true: warnings %v", listen, ws)
		}
	}
}

// A component type's own warnings come out under the component's path.
func TestComponentWarningsNameTheirField(t *testing.T) {
	types := component.NewRegistry(component.Sink(component.Type[warnSink]{Name: "fake"}))
	cfg, err := Parse([]byte("sinks:\n  - {name: a, type: fake}\n  - name: b\n    type: fake\n    verify: false\n"), types, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.Warnings()); got != "[sinks[1].verify (line 5): false: anyone in between reads it]" {
		t.Fatalf("warnings %s", got)
	}
}

type warnSink struct {
	Name   string `yaml:"name"`
	Type   string `yaml:"type"`
	Verify *bool  `yaml:"verify"`
}

func (*warnSink) SetDefaults()    {}
func (*warnSink) Validate() error { return nil }

func (s *warnSink) Warnings() []conf.Warning {
	var ws conf.Warnings
	ws.If(s.Verify != nil && !*s.Verify, "verify", "false: anyone in between reads it")
	return ws
}
