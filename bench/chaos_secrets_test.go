package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The scan must find a secret a node wrote into its log, naming the
// file, the line and which secret; a clean log gives no violation.
func TestSecretScanFindsASecretInALog(t *testing.T) {
	dir := t.TempDir()
	clean := "time=x level=INFO msg=\"sink paused\" url=http://splunk:8088 token=[redacted]\n"
	leaky := clean + "time=x level=ERROR msg=\"post failed\" err=\"Authorization: Splunk " + benchToken + "\"\n"
	if err := os.WriteFile(filepath.Join(dir, "node-1.log"), []byte(clean), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node-2.log"), []byte(leaky), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &chaosRun{opts: chaosOpts{out: dir}}
	c.scanSecrets()
	if len(c.violations) != 1 || !strings.Contains(c.violations[0], "HEC token") || !strings.Contains(c.violations[0], "node-2.log line 2") {
		t.Fatalf("violations %q, want one naming the HEC token in node-2.log line 2", c.violations)
	}
}
