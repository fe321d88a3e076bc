package main

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/mod/modfile"
)

// productModule is the module the bench measures; its directory is the
// repository's root, where the bench finds the shipped policies and builds
// the sluice binary.
const productModule = "github.com/sluicehq/sluice"

// repoPath is elem under the repository's root, found from the working
// directory (the bench runs as `go -C bench run .`, but any directory of
// the repository will do) or, failing that, from where this file was
// compiled: never relative to the working directory itself.
func repoPath(elem ...string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{root}, elem...)...), nil
}

func repoRoot() (string, error) {
	if wd, err := os.Getwd(); err == nil {
		if root, ok := moduleRootAbove(wd); ok {
			return root, nil
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if root, ok := moduleRootAbove(filepath.Dir(file)); ok {
			return root, nil
		}
	}
	return "", errors.New("the sluice repository is not above the working directory: run the bench from inside it (go -C bench run . SCENARIO)")
}

// moduleRootAbove is the nearest directory at or above dir whose go.mod
// declares productModule (the bench's own go.mod declares another).
func moduleRootAbove(dir string) (string, bool) {
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modfile.ModulePath(b) == productModule {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
