package cmd

import (
	"slices"
	"testing"
)

func TestDevStandInsCloseInReverse(t *testing.T) {
	var si devStandIns
	var order []int
	for i := 1; i <= 3; i++ {
		si.onClose(func() { order = append(order, i) })
	}
	si.close()
	if !slices.Equal(order, []int{3, 2, 1}) {
		t.Errorf("closed in order %v, want 3 2 1 (the HEC file after the HEC stand-in, BigQuery's dump before it stops)", order)
	}
}

func TestDevSource(t *testing.T) {
	for in, want := range map[string]string{"": "sls", "sls": "sls", "gcs": "gcs", "both": "both"} {
		if got, err := devSource(in); err != nil || got != want {
			t.Errorf("devSource(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := devSource("s3"); err == nil || err.Error() != `--source "s3": want sls, gcs or both` {
		t.Errorf("devSource(s3): %v", err)
	}
}
