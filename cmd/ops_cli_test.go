package cmd

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/node/ops"
)

// runCLIWithInput is runCLI with stdin not a terminal.
func runCLIWithInput(in string, args ...string) (string, error) {
	cmd := newRootCmd(testPolicies)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(in))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// fakeDLQ is an admin API holding 3 dead-lettered records; it records the
// purge requests it gets.
func fakeDLQ(t *testing.T) (url string, purges func() []map[string]any) {
	var mu sync.Mutex
	var got []map[string]any
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/dlq", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode([]ops.DLQGroup{{Stage: "sink", Name: "splunk", Reason: "400", Count: 2}, {Stage: "sink", Name: "splunk", Reason: "413", Count: 1}})
	})
	mux.HandleFunc("POST /api/v1/dlq/purge", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body)
		mu.Unlock()
		_, _ = w.Write([]byte(`{"purged":3}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, func() []map[string]any { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
}

func TestDLQPurgeWantsYesOffATerminal(t *testing.T) {
	url, purges := fakeDLQ(t)
	if _, err := runCLIWithInput("purge\n", "dlq", "purge", "--admin", url); err == nil || err.Error() != "purge deletes 3 records for good: confirm with --yes" {
		t.Errorf("purge without --yes off a terminal: %v", err)
	}
	if n := len(purges()); n != 0 {
		t.Fatalf("%d purges sent without confirmation", n)
	}
	out, err := runCLIWithInput("", "dlq", "purge", "--yes", "--stage", "sink", "--since", "-1h", "--admin", url)
	if err != nil || out != "purged 3 records\n" {
		t.Fatalf("purge --yes: %q, %v", out, err)
	}
	p := purges()
	if len(p) != 1 || p[0]["stage"] != "sink" || p[0]["confirm"] != true || p[0]["since"] == nil {
		t.Errorf("purge requests %v, want one for stage sink since an hour ago, confirmed", p)
	}
	if _, err := runCLIWithInput("", "dlq", "list", "--since", "yesterday", "--admin", url); err == nil || !strings.HasPrefix(err.Error(), "--since: ") {
		t.Errorf("dlq list --since yesterday: %v, want the flag named", err)
	}
}

// A bad window fails before the node is reached (here: before the token
// file is read), and a missing --from is cobra's required-flag error.
func TestReplayReadsItsWindowFirst(t *testing.T) {
	missing := t.TempDir() + "/no-token"
	if _, err := runCLIWithInput("", "replay", "--sink", "splunk", "--from", "then", "--admin-token-file", missing); err == nil || !strings.HasPrefix(err.Error(), "--from: ") {
		t.Errorf("replay --from then: %v, want the --from error", err)
	}
	if _, err := runCLIWithInput("", "replay", "--sink", "splunk", "--from", "-1h", "--admin-token-file", missing); err == nil || !strings.HasPrefix(err.Error(), "--admin-token-file: ") {
		t.Errorf("replay with a missing token file: %v", err)
	}
	if _, err := runCLIWithInput("", "replay", "--sink", "splunk"); err == nil || !strings.Contains(err.Error(), `required flag(s) "from" not set`) {
		t.Errorf("replay without --from: %v", err)
	}
}
