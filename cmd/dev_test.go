package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/actors/fetch/gcs/gcstest"
	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
	"github.com/sluicehq/sluice/node/ops"
	"gopkg.in/yaml.v3"
)

// routedSeqs is what the default policy sends to Splunk out of the dev
// sample: the logs of audit_log groups.
func routedSeqs(records int) map[string]bool {
	return slstest.AuditSeqs(slstest.AuditLogGroups(1, records, devEpoch))
}

// hecSeqs counts each seq in the HEC stand-in's file.
func hecSeqs(t *testing.T, dir string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "hec-received.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Event map[string]string `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("HEC file line %q: %v", sc.Text(), err)
		}
		got[ev.Event["seq"]]++
	}
	return got
}

func devRun(t *testing.T, o devOptions) string {
	t.Helper()
	var out bytes.Buffer
	if err := runDev(context.Background(), &out, io.Discard, o); err != nil {
		t.Fatalf("sluice dev: %v\n%s", err, out.String())
	}
	return out.String()
}

func TestDevDeliversEachRoutedRecordOnce(t *testing.T) {
	dir := t.TempDir()
	devRun(t, devOptions{policies: testPolicies, dataDir: dir, admin: "127.0.0.1:0", logLevel: "error", records: 3000, shards: 3, exitWhenDelivered: true, timeout: 60 * time.Second})
	want, got := routedSeqs(3000), hecSeqs(t, dir)
	if len(want) == 0 || len(want) == 3000 {
		t.Fatalf("the sample should route some records and drop others: %d of 3000 routed", len(want))
	}
	for seq := range want {
		if got[seq] != 1 {
			t.Errorf("seq %s reached Splunk %d times", seq, got[seq])
		}
	}
	if len(got) != len(want) {
		t.Errorf("Splunk got %d distinct records, the policy routes %d", len(got), len(want))
	}
}

func TestDevSplunkOutageLosesNothing(t *testing.T) {
	dir := t.TempDir()
	out := devRun(t, devOptions{policies: testPolicies, dataDir: dir, admin: "127.0.0.1:0", logLevel: "error", records: 2000, shards: 2, exitWhenDelivered: true, timeout: 60 * time.Second, splunkDownFor: 3 * time.Second})
	want, got := routedSeqs(2000), hecSeqs(t, dir)
	for seq := range want {
		if got[seq] != 1 {
			t.Errorf("seq %s reached Splunk %d times", seq, got[seq])
		}
	}
	if !bytes.Contains([]byte(out), []byte("Splunk is down for the first 3s")) {
		t.Errorf("dev did not announce the outage:\n%s", out)
	}
}

// TestDevResumesAfterSIGKILL kills a dev run mid-way and runs again over the
// same data directory: everything routed arrives, nothing is lost.
func TestDevResumesAfterSIGKILL(t *testing.T) {
	const records = 20000
	if dir := os.Getenv("SLUICE_DEV_CHILD"); dir != "" {
		_ = runDev(context.Background(), io.Discard, io.Discard, devOptions{policies: testPolicies, dataDir: dir, admin: "127.0.0.1:0", logLevel: "error", records: records, shards: 4})
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDevResumesAfterSIGKILL$")
	cmd.Env = append(os.Environ(), "SLUICE_DEV_CHILD="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once Splunk has some, but not all, of the records.
	deadline := time.Now().Add(60 * time.Second)
	for {
		fi, err := os.Stat(filepath.Join(dir, "hec-received.ndjson"))
		if err == nil && fi.Size() > 500_000 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the first run delivered nothing within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	before := len(hecSeqs(t, dir))
	want := routedSeqs(records)
	if before >= len(want) {
		t.Skipf("the first run finished (%d records) before it could be killed", before)
	}
	out := devRun(t, devOptions{policies: testPolicies, dataDir: dir, admin: "127.0.0.1:0", logLevel: "error", records: records, shards: 4, exitWhenDelivered: true, timeout: 90 * time.Second})
	got := hecSeqs(t, dir)
	dups := 0
	for seq := range want {
		if got[seq] == 0 {
			state, _ := os.ReadFile(filepath.Join(dir, "sls-standin-state.json"))
			t.Fatalf("seq %s was lost across the SIGKILL (%d records before the kill)\nsecond run:\n%s\nSLS state: %s", seq, before, out, state)
		}
		dups += got[seq] - 1
	}
	if !bytes.Contains([]byte(out), []byte("DLQ 0 |")) {
		t.Errorf("records were dead-lettered:\n%s", out)
	}
	t.Logf("killed after %d of %d routed records; after the second run all arrived, %d duplicates (at-least-once across a kill)", before, len(want), dups)
}

// Both sources at once: the SLS sample's routed logs reach Splunk and every
// GitHub audit record of the GCS objects, through Swarm's github_audit
// policy, reaches the BigQuery stand-in — each once.
func TestDevBothSourcesDeliverEachRecordOnce(t *testing.T) {
	dir := t.TempDir()
	devRun(t, devOptions{policies: testPolicies, dataDir: dir, admin: "127.0.0.1:0", logLevel: "error", records: 2000, shards: 2, source: "both", gcsObjects: 3,
		exitWhenDelivered: true, timeout: 60 * time.Second})
	f, err := os.Open(filepath.Join(dir, "hec-received.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seqs, docs := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Sourcetype string         `json:"sourcetype"`
			Event      map[string]any `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("HEC file line %q: %v", sc.Text(), err)
		}
		seqs[fmt.Sprint(ev.Event["seq"])]++
	}
	rows, err := os.Open(filepath.Join(dir, "bigquery", "github.audit.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sc = bufio.NewScanner(rows)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("BigQuery row %q: %v", sc.Text(), err)
		}
		if row["id"] != row["_document_id"] || row["timestamp"] == nil || row["@timestamp"] != nil {
			t.Fatalf("row not shaped by Swarm's policy (id from _document_id, timestamp, @timestamp removed): %v", row)
		}
		docs[fmt.Sprint(row["id"])]++
	}
	for seq := range routedSeqs(2000) {
		if seqs[seq] != 1 {
			t.Errorf("SLS seq %s reached Splunk %d times", seq, seqs[seq])
		}
	}
	for i := 0; i < 3*gcsPerObject; i++ {
		var rec struct {
			ID string `json:"_document_id"`
		}
		_ = json.Unmarshal(gcstest.SampleRecord(i), &rec)
		if docs[rec.ID] != 1 {
			t.Fatalf("GitHub record %s reached BigQuery %d times", rec.ID, docs[rec.ID])
		}
	}
	if len(docs) != 3*gcsPerObject {
		t.Fatalf("BigQuery got %d GitHub records, want %d", len(docs), 3*gcsPerObject)
	}
}

// syncBuffer is a bytes.Buffer safe to read while dev writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

// sluiceCmd runs the sluice command line in-process and returns its output.
func sluiceCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(testPolicies)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestDevPrintsOperationsCommandsThatWork follows dev's printed help: the
// status, replay and dlq commands, as printed, reach it and say what it
// does; without the token file they cannot change it.
func TestDevPrintsOperationsCommandsThatWork(t *testing.T) {
	t.Setenv("SLUICE_ADMIN_TOKEN", "") // only what dev printed
	const records = 2000
	admin := startDev(t, devOptions{policies: testPolicies, admin: "127.0.0.1:0", logLevel: "error", records: records, shards: 2})
	want := len(routedSeqs(records))
	st := waitDevDelivered(t, admin, want)
	if len(st.Sources) != 1 || st.Sources[0].Type != "sls" || len(st.Sources[0].Parts) != 2 || st.Sources[0].Parts[0].CheckpointTime == nil {
		t.Errorf("status sources: %+v, want one sls source with 2 shards and checkpoints", st.Sources)
	}
	if st.Sinks[0].State != "up" {
		t.Errorf("sink state %q, want up", st.Sinks[0].State)
	}
	says := map[string][]string{
		"status":      {"SOURCES", "shard 1", "BUFFER", "sink-splunk", "SINKS", "POLICIES", "DLQ"},
		"replay":      {fmt.Sprintf("would replay %d records", want)},
		"dlq list":    {"STAGE"},
		"dlq redrive": {"would re-drive 0 records"},
	}
	for _, args := range admin.help {
		args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--watch" })
		var name []string
		for _, a := range args {
			if strings.HasPrefix(a, "-") {
				break
			}
			name = append(name, a)
		}
		cmd := strings.Join(name, " ")
		wants, ok := says[cmd]
		if !ok {
			t.Errorf("dev printed sluice %s, which this test does not know", strings.Join(args, " "))
			continue
		}
		delete(says, cmd)
		out := sluiceCmd(t, args...)
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("sluice %s lacks %q:\n%s", strings.Join(args, " "), w, out)
			}
		}
	}
	for cmd := range says {
		t.Errorf("dev did not print sluice %s:\n%s", cmd, admin.out)
	}
	// The token is what lets the CLI in: without it, no write.
	if _, err := runCLI("replay", "--sink", "splunk", "--from", "-10m", "--dry-run", "--admin", admin.addr); err == nil || !strings.Contains(err.Error(), "admin token required") {
		t.Errorf("replay without dev's token file: %v, want it refused", err)
	}
	if fi, err := os.Stat(admin.tokenFile); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("dev's admin token file has mode %v, want 0600", fi.Mode().Perm())
	}
}

// devAdmin is how dev's printed help reaches its admin API.
type devAdmin struct {
	addr      string     // host:port
	tokenFile string     // what --admin-token-file names
	flags     []string   // --admin ADDR --admin-token-file FILE
	help      [][]string // the sluice commands printed, without "sluice"
	out       string     // all dev printed
}

// cmd runs sluice args with dev's admin flags.
func (a devAdmin) cmd(t *testing.T, args ...string) string {
	t.Helper()
	return sluiceCmd(t, append(args, a.flags...)...)
}

// get reads path from the admin API with dev's token, as Prometheus would.
func (a devAdmin) get(t *testing.T, path string) *http.Response {
	t.Helper()
	token, err := os.ReadFile(a.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+a.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return resp
}

// startDev runs dev in the background until the test ends and returns how
// its printed help reaches it.
func startDev(t *testing.T, o devOptions) devAdmin {
	t.Helper()
	o.dataDir = t.TempDir()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDev(ctx, &out, io.Discard, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	status := regexp.MustCompile(`(?m)^    sluice status --watch (.+)$`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if status.MatchString(out.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not print the status command:\n%s", out.String())
		}
	}
	a := devAdmin{out: out.String()}
	a.flags = strings.Fields(status.FindStringSubmatch(a.out)[1])
	for i := 0; i+1 < len(a.flags); i++ {
		switch a.flags[i] {
		case "--admin":
			a.addr = a.flags[i+1]
		case "--admin-token-file":
			a.tokenFile = a.flags[i+1]
		}
	}
	if a.addr == "" || a.tokenFile == "" {
		t.Fatalf("dev's status command lacks --admin or --admin-token-file:\n%s", a.out)
	}
	for _, m := range regexp.MustCompile(`(?m)^    sluice (.+)$`).FindAllStringSubmatch(a.out, -1) {
		a.help = append(a.help, strings.Fields(m[1]))
	}
	return a
}

// waitDevDelivered polls sluice status until the sink has events.
func waitDevDelivered(t *testing.T, admin devAdmin, events int) ops.Status {
	t.Helper()
	var st ops.Status
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := json.Unmarshal([]byte(admin.cmd(t, "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, s := range st.Sinks {
			total += int(s.Events)
		}
		if total == events {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %d events delivered: %+v", events, st.Sinks)
		}
	}
}

// TestDashboardAndAlertsNameRealMetrics checks every metric the Grafana
// dashboard and the Prometheus alerts use against a running node's /metrics.
func TestDashboardAndAlertsNameRealMetrics(t *testing.T) {
	var used []string
	var alerts struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &alerts); err != nil {
		t.Fatal(err)
	}
	for _, g := range alerts.Groups {
		for _, r := range g.Rules {
			used = append(used, r.Expr)
		}
	}
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err = os.ReadFile("../deploy/grafana/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			used = append(used, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			used = append(used, q)
		}
	}
	names := map[string]bool{}
	for _, expr := range used {
		for _, n := range regexp.MustCompile(`\bsluice_[a-z0-9_]+`).FindAllString(expr, -1) {
			names[n] = true
		}
	}
	if len(names) < 15 {
		t.Fatalf("found only %d metric names in the dashboard and alerts: %v", len(names), names)
	}

	admin := startDev(t, devOptions{policies: testPolicies, admin: "127.0.0.1:0", logLevel: "error", records: 1000, shards: 2, source: "both", gcsObjects: 2})
	waitDevDelivered(t, admin, len(routedSeqs(1000))+2*gcsPerObject)
	resp := admin.get(t, "/metrics")
	defer resp.Body.Close()
	exposed := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		exposed[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	for n := range names {
		if !exposed[n] {
			t.Errorf("the dashboard or alerts use %s, which /metrics does not have", n)
		}
	}
}
