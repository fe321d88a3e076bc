package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The repository's root is found from any directory in it, the bench's own
// included (whose go.mod names another module), and not from outside it.
func TestModuleRootAbove(t *testing.T) {
	want, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{".", "..", "../testdata/policies/schema"} {
		abs, _ := filepath.Abs(dir)
		if got, ok := moduleRootAbove(abs); !ok || got != want {
			t.Errorf("from %s: %q, %v; want %s", dir, got, ok, want)
		}
	}
	if got, ok := moduleRootAbove(t.TempDir()); ok {
		t.Errorf("from a temporary directory: %s", got)
	}
	p, err := repoPath("testdata", "policies")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p, "event.rego")); err != nil {
		t.Errorf("repoPath: %v", err)
	}
}
