package conf

import (
	"fmt"
	"testing"
)

func TestSecretPathsNameTheSetSecrets(t *testing.T) {
	v := &struct {
		Top   Secret  `yaml:"top"`
		Empty Secret  `yaml:"empty"`
		In    *inner  `yaml:"in"`
		Items []inner `yaml:"items"`
		Any   any     `yaml:"any"` // its owner names it
		plain Secret
	}{Top: "a", In: &inner{Token: "b"}, Items: []inner{{}, {Token: "c"}}, Any: &inner{Token: "d"}, plain: "e"}
	got := fmt.Sprint(SecretPaths(v))
	if want := "[in.token items[1].token top]"; got != want {
		t.Fatalf("SecretPaths = %s, want %s", got, want)
	}
}

func TestWarningsIfAndString(t *testing.T) {
	var ws Warnings
	ws.If(false, "a", "off")
	ws.If(true, "tls.insecure_skip_verify", "any certificate %s", "passes")
	if len(ws) != 1 || ws[0].String() != "tls.insecure_skip_verify: any certificate passes" {
		t.Fatalf("warnings %v", ws)
	}
	ws[0].Line = 7
	if got := ws[0].String(); got != "tls.insecure_skip_verify (line 7): any certificate passes" {
		t.Fatalf("with a line: %s", got)
	}
}

func TestLoopbackAndCleartext(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "127.0.0.2:1": true,
		"0.0.0.0:1": false, ":1": false, "10.0.0.11:6222": false, "node-1:6222": false, "nonsense": false} {
		if got := LoopbackAddr(addr); got != want {
			t.Errorf("LoopbackAddr(%q) = %t", addr, got)
		}
	}
	for u, want := range map[string]bool{"http://splunk:8088": true, "http://10.0.0.1": true,
		"https://splunk:8088": false, "http://127.0.0.1:8088": false, "http://localhost": false, "": false} {
		if got := CleartextURL(u); got != want {
			t.Errorf("CleartextURL(%q) = %t", u, got)
		}
	}
}
