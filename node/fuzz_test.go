package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/actors/builtin"
)

// Any config file gets a config or one clear error line, never a panic.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../testdata/config/*.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("node: {name: [1, 2]}"))
	f.Add([]byte("sinks: [{type: splunk_hec, name: s, url: 'http://x', token: ${T}}]"))
	env := func(k string) (string, bool) { return "value-of-" + k, k != "UNSET" }
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, builtin.Registry(), env)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error")
			}
			return
		}
		if cfg == nil {
			t.Fatal("no config and no error")
		}
	})
}
