package conf

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type inner struct {
	Timeout Duration `yaml:"timeout"`
	Token   Secret   `yaml:"token"`
}

type outer struct {
	Name  string   `yaml:"name"`
	Size  ByteSize `yaml:"size"`
	In    inner    `yaml:"in"`
	Items []inner  `yaml:"items"`
}

func decode(t *testing.T, src string) (outer, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	var o outer
	return o, DecodeStrict(&n, "", &o)
}

func TestDecodeStrictGood(t *testing.T) {
	o, err := decode(t, "name: a\nsize: 2GiB\nin: {timeout: 30s, token: abc}\nitems:\n  - timeout: 1m\n")
	if err != nil {
		t.Fatal(err)
	}
	if o.Size != 2<<30 || o.In.Timeout.D() != 30*time.Second || o.In.Token.Reveal() != "abc" || o.Items[0].Timeout.D() != time.Minute {
		t.Fatalf("decoded %+v", o)
	}
}

func TestDecodeStrictNamesTheField(t *testing.T) {
	cases := map[string]string{
		"name: a\nbogus: 1\n":   "bogus (line 2): unknown key",
		"in: {timeout: soon}\n": "in.timeout (line 1): bad duration",
		"items:\n  - tokn: x\n": "items[0].tokn (line 2): unknown key",
		"size: lots\n":          "size (line 1): bad size",
		"in: [1, 2]\n":          "in (line 1): want a mapping",
		"name: a\nname: b\n":    "name (line 2): key given twice",
	}
	for src, want := range cases {
		_, err := decode(t, src)
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: err = %v, want prefix %q", src, err, want)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "token", s, "cfg", inner{Token: s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, inner{Token: s}, s, s, s), buf.String()} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret leaked: %s", out)
		}
	}
}

func TestPrefix(t *testing.T) {
	err := Prefix("sinks[1]", Errorf("token", "required"))
	if err.Error() != "sinks[1].token: required" {
		t.Fatal(err)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"1024": 1024, "1KiB": 1024, "20GiB": 20 << 30, "1.5MB": 1500000} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("%s: %d, %v", in, got, err)
		}
	}
}
