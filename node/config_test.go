package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/actors/component"
	"github.com/sluicehq/sluice/internal/conf"
)

// Each broken config in testdata/config gives one error naming the field.
func TestValidateBrokenConfigs(t *testing.T) {
	want := map[string]string{
		"unknown-key.yaml":         `queue.retain_delivred (line 6): unknown key "retain_delivred"`,
		"bad-duration.yaml":        `queue.retain_delivered (line 2): bad duration "three days"`,
		"bad-size.yaml":            `queue.max_bytes (line 2): bad size "lots"`,
		"bad-sync.yaml":            `queue.sync: "sometimes": want interval or always`,
		"unset-env.yaml":           `node.admin_token (line 2): environment variable SLUICE_TEST_UNSET_TOKEN is not set`,
		"admin-no-token.yaml":      `node.admin_token: required when node.admin_listen (0.0.0.0:8686) is not a loopback address`,
		"unknown-type.yaml":        `sinks[0].type (line 2): unknown type "splunk_heck"`,
		"not-yaml.yaml":            `not valid YAML`,
		"bad-cluster.yaml":         `cluster.peers[1]: "node-2" is not host:port`,
		"nats-no-token.yaml":       `node.nats_operator_password: required (or node.nats_operator_nkey) when node.nats_listen (0.0.0.0:4222) is not a loopback address`,
		"cluster-tls-partial.yaml": `cluster.tls.key_file: required with the other cluster.tls files`,
		"retain-under-dup.yaml":    `queue.retain_delivered: 5m0s is shorter than queue.duplicate_window (10m0s)`,
		"cluster-no-tls.yaml":      `cluster.tls: required when cluster.listen (0.0.0.0:6222) is not a loopback address`,
		"insecure-with-tls.yaml":   `cluster.insecure: true with cluster.tls set`,
		"admin-no-tls.yaml":        `node.tls: required when node.admin_listen (0.0.0.0:8686) is not a loopback address`,
		"nats-no-tls.yaml":         `node.tls: required when node.nats_listen (0.0.0.0:4222) is not a loopback address`,
		"cluster-pause-short.yaml": `cluster.pause_after: 200ms: at least 1s`,
	}
	for _, extra := range extraBrokenConfigs {
		want[extra.file] = extra.want
	}
	files, err := filepath.Glob("../testdata/config/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "good") {
			continue
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("%s: no expected error listed", name)
			continue
		}
		_, err := Load(f, builtin.Registry())
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), w) || !strings.HasPrefix(err.Error(), f+": ") {
			t.Errorf("%s:\n got  %v\n want %s: …%s…", name, err, f, w)
		}
		if strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%s: more than one line: %v", name, err)
		}
	}
}

func TestGoodConfigs(t *testing.T) {
	t.Setenv("SPLUNK_HEC_TOKEN", "s3cr3t-token")
	t.Setenv("SLS_AK_ID", "id")
	t.Setenv("SLS_AK_KEY", "key")
	files, _ := filepath.Glob("../testdata/config/good*.yaml")
	for _, f := range files {
		if _, err := Load(f, builtin.Registry()); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestDefaultsMakeAMinimalConfigShort(t *testing.T) {
	cfg, err := Parse([]byte("node: {name: n1, data_dir: /tmp/d}\n"), builtin.Registry(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.AdminListen != "127.0.0.1:8686" || cfg.Queue.MaxBytes != 20<<30 || cfg.Queue.RetainDelivered.D().Hours() != 72 || cfg.Queue.Sync != "interval" {
		t.Fatalf("defaults: %+v %+v", cfg.Node, cfg.Queue)
	}
}

func TestEmptyConfigIsValid(t *testing.T) {
	if _, err := Parse(nil, builtin.Registry(), os.LookupEnv); err != nil {
		t.Fatal(err)
	}
}

func TestComponentErrorsNameTheirField(t *testing.T) {
	types := component.NewRegistry(component.Sink(component.Type[tokenSink]{Name: "fake"}))
	cases := map[string]string{
		"sinks:\n  - {name: a, type: fake, token: t}\n  - {name: a, type: fake, token: t}\n": `sinks[1].name (line 3): duplicate name "a"`,
		"sinks:\n  - name: a\n    type: fake\n":                                              `sinks[0].token (line 2): required`,
		"sinks:\n  - name: a\n    type: fake\n    tokn: x\n":                                 `sinks[0].tokn (line 4): unknown key "tokn"`,
		"sinks:\n  - type: fake\n":                                                           `sinks[0].name (line 2): required`,
	}
	for src, want := range cases {
		_, err := Parse([]byte(src), types, os.LookupEnv)
		var fe *conf.FieldError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\n got  %v\n want %s", src, err, want)
		}
	}
}

type tokenSink struct {
	Name  string      `yaml:"name"`
	Type  string      `yaml:"type"`
	Token conf.Secret `yaml:"token"`
}

func (*tokenSink) SetDefaults() {}

func (c *tokenSink) Validate() error {
	if c.Token.IsEmpty() {
		return conf.Errorf("token", "required")
	}
	return nil
}

// extraBrokenConfigs are the broken configs whose errors come from a
// component type's own validation.
var extraBrokenConfigs = []struct{ file, want string }{
	{"sink-no-token.yaml", "sinks[0].token (line 2): required"},
	{"sls-bad-start.yaml", `sources[0].start (line 12): parsing time "yesterday"`},
	{"duplicate-sink.yaml", `sinks[1].name (line 6): duplicate name "splunk" (also sinks[0])`},
	{"gcs-bad-parser.yaml", `sources[0].parser (line 8): "xml": want one of [json json_array cloudtrail csv text]`},
}

// node.nats_token still works, as the deprecated name of the NATS operator
// password; both at once is an error naming the old one.
func TestNATSTokenIsTheOperatorPassword(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	cfg, err := Parse([]byte("node: {nats_listen: 0.0.0.0:4222, insecure: true, nats_token: t0k}\n"), builtin.Registry(), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Node.OperatorPassword().Reveal(); got != "t0k" {
		t.Fatalf("operator password %q, want the token", got)
	}
	cfg, err = Parse([]byte("node: {nats_listen: 0.0.0.0:4222, insecure: true, nats_operator_password: pw}\n"), builtin.Registry(), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Node.OperatorPassword().Reveal(); got != "pw" {
		t.Fatalf("operator password %q", got)
	}
	_, err = Parse([]byte("node: {nats_token: "+strings.Repeat("x", 73)+"}\n"), builtin.Registry(), noEnv)
	if err == nil || !strings.Contains(err.Error(), "node.nats_token: longer than 72 bytes") {
		t.Fatalf("long token: %v", err)
	}
	_, err = Parse([]byte("node: {nats_operator_password: pw, nats_token: t0k}\n"), builtin.Registry(), noEnv)
	if err == nil || !strings.Contains(err.Error(), "node.nats_token: a deprecated alias of node.nats_operator_password") {
		t.Fatalf("both set: %v", err)
	}
}

// The consumers an operator may not touch are the transform's and every
// configured sink's.
func TestSluiceConsumersAreProtected(t *testing.T) {
	cfg := &Config{Sinks: []Component{{Name: "splunk"}, {Name: "bq"}}}
	got := strings.Join(sluiceConsumers(cfg), " ")
	if got != "transform sink-splunk sink-bq" {
		t.Fatalf("protected consumers: %s", got)
	}
}

// An operator nkey is an alternative to the password, checked as one.
func TestNATSOperatorNkey(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	if _, err := Parse([]byte("node: {nats_listen: 0.0.0.0:4222, insecure: true, nats_operator_nkey: "+pub+"}\n"), builtin.Registry(), noEnv); err != nil {
		t.Fatal(err)
	}
	_, err = Parse([]byte("node: {nats_operator_nkey: SUAKEY}\n"), builtin.Registry(), noEnv)
	if err == nil || !strings.Contains(err.Error(), "node.nats_operator_nkey: \"SUAKEY\" is not a public user nkey") {
		t.Fatalf("bad nkey: %v", err)
	}
}
