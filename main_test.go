package main

import (
	"bytes"
	"strings"
	"testing"
)

func runCLI(args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestValidateExitsNonZeroNamingTheField(t *testing.T) {
	_, err := runCLI("validate", "--config", "testdata/config/unknown-key.yaml")
	if err == nil || !strings.Contains(err.Error(), "queue.retain_delivred (line 6): unknown key") {
		t.Fatalf("err = %v", err)
	}
	_, err = runCLI("validate", "--config", "testdata/config/missing-file.yaml")
	if err == nil || !strings.Contains(err.Error(), "missing-file.yaml") {
		t.Fatalf("missing file: err = %v", err)
	}
}
