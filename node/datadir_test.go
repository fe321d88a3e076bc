package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDataDirLockIsExclusiveAndNamesItsHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LockDataDir(dir, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	// flock belongs to the open file: a second open in this process conflicts.
	_, err = LockDataDir(dir, "node-2")
	want := fmt.Sprintf("data_dir %s is in use by sluice pid %d (node node-1, started ", dir, os.Getpid())
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), "; one process per data dir") {
		t.Fatalf("second lock: %v\nwant it to contain %q", err, want)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	second, err := LockDataDir(dir, "node-2")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	defer second.Release()
	b, _ := os.ReadFile(second.Path())
	if !strings.Contains(string(b), `"node":"node-2"`) {
		t.Fatalf("lock file %q does not name its holder", b)
	}
}

// A lock file whose writer is gone (kill -9, power loss) holds no flock.
func TestDataDirLockIgnoresAStaleFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, LockFileName), []byte(`{"pid":1,"node":"old","started":"2026-01-01T00:00:00Z"}`+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	l, err := LockDataDir(dir, "new")
	if err != nil {
		t.Fatalf("a stale lock file blocked: %v", err)
	}
	defer l.Release()
	b, _ := os.ReadFile(l.Path())
	if strings.Contains(string(b), "old") {
		t.Fatalf("lock file kept the stale holder: %q", b)
	}
}
