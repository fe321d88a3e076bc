package cmd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/node"
)

// cliChildEnv holds the arguments (separated by \x1f) a child process of
// the test binary runs the sluice command line with, as the built binary
// would: "sluice: <err>" on stderr and exit status 1 on failure.
const cliChildEnv = "SLUICE_TEST_CLI_ARGS"

// runCLIChild is the child's side; it never returns when it ran.
func runCLIChild() {
	args := os.Getenv(cliChildEnv)
	if args == "" {
		return
	}
	cmd := newRootCmd(testPolicies)
	cmd.SetArgs(strings.Split(args, "\x1f"))
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// cliProcess is one `sluice …` child process, its stderr kept.
type cliProcess struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	stderr  bytes.Buffer
	running chan struct{} // closed when it logs "node running"
	done    chan struct{} // closed when it exited
	err     error         // its exit, once done
}

func startCLI(t *testing.T, test string, args ...string) *cliProcess {
	t.Helper()
	p := &cliProcess{running: make(chan struct{}), done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^"+test+"$")
	p.cmd.Env = append(os.Environ(), cliChildEnv+"="+strings.Join(args, "\x1f"))
	r, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		once := sync.Once{}
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.Write(sc.Bytes())
			p.stderr.WriteByte('\n')
			p.mu.Unlock()
			if strings.Contains(sc.Text(), "node running") {
				once.Do(func() { close(p.running) })
			}
		}
		_, _ = io.Copy(io.Discard, r)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.signal(syscall.SIGKILL); <-p.done })
	return p
}

func (p *cliProcess) signal(s os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(s)
	}
}

func (p *cliProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitRunning fails the test unless the node runs within d.
func (p *cliProcess) waitRunning(t *testing.T, what string, d time.Duration) {
	t.Helper()
	select {
	case <-p.running:
	case <-p.done:
		t.Fatalf("%s exited (%v) instead of running:\n%s", what, p.err, p.output())
	case <-time.After(d):
		t.Fatalf("%s not running within %s:\n%s", what, d, p.output())
	}
}

// TestRunRefusesASecondProcessOnTheDataDir: two `sluice run` on one
// data_dir corrupt the JetStream store, so the second must refuse to start,
// naming the first; a lock left by a killed process must not block.
func TestRunRefusesASecondProcessOnTheDataDir(t *testing.T) {
	runCLIChild()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	policies, err := filepath.Abs("../testdata/policies")
	if err != nil {
		t.Fatal(err)
	}
	config := func(name string) string {
		path := filepath.Join(dir, name+".yaml")
		cfg := fmt.Sprintf("node:\n  name: %s\n  data_dir: %s\n  admin_listen: 127.0.0.1:0\n  shutdown_timeout: 5s\nqueue:\n  max_bytes: 64MiB\npolicies:\n  dir: %s\n", name, data, policies)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const test = "TestRunRefusesASecondProcessOnTheDataDir"
	first := startCLI(t, test, "run", "--config", config("node-a"))
	first.waitRunning(t, "the first sluice run", 20*time.Second)

	second := startCLI(t, test, "run", "--config", config("node-b"))
	select {
	case <-second.done:
	case <-second.running:
		t.Fatalf("a second sluice run started on the data dir the first one uses:\n%s", second.output())
	case <-time.After(20 * time.Second):
		t.Fatalf("the second sluice run neither started nor refused within 20s:\n%s", second.output())
	}
	var exit *exec.ExitError
	if !errors.As(second.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the second sluice run exited with %v, want status 1:\n%s", second.err, second.output())
	}
	want := fmt.Sprintf("sluice: data_dir %s is in use by sluice pid %d (node node-a, started ", data, first.cmd.Process.Pid)
	if out := second.output(); !strings.Contains(out, want) || !strings.Contains(out, "one process per data dir") {
		t.Fatalf("the refusal does not name the holder; want %q … \"one process per data dir\", got:\n%s", want, out)
	}

	// Killed, the first leaves its lock file behind: it must not block.
	first.signal(syscall.SIGKILL)
	<-first.done
	if b, err := os.ReadFile(filepath.Join(data, "sluice.lock")); err != nil || !strings.Contains(string(b), fmt.Sprint(first.cmd.Process.Pid)) {
		t.Fatalf("lock file after SIGKILL: %q, %v", b, err)
	}
	third := startCLI(t, test, "run", "--config", config("node-b"))
	third.waitRunning(t, "sluice run after the holder was killed", 20*time.Second)
	third.signal(syscall.SIGTERM)
	select {
	case <-third.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20s of SIGTERM:\n%s", third.output())
	}
	if third.err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", third.err, third.output())
	}
}

// sluice dev keeps its buffer and its stand-ins' files in its data dir:
// it refuses one that a node holds.
func TestDevRefusesADataDirInUse(t *testing.T) {
	dir := t.TempDir()
	lock, err := node.LockDataDir(dir, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	err = runDev(t.Context(), io.Discard, io.Discard, devOptions{policies: testPolicies, dataDir: dir, admin: "127.0.0.1:0", logLevel: "error", records: 10, shards: 1})
	if !errors.Is(err, node.ErrDataDirInUse) || !strings.Contains(err.Error(), "(node node-1, started ") {
		t.Fatalf("dev on a data dir in use: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sls-standin-state.json")); err == nil {
		t.Fatal("dev wrote into the data dir before it was refused")
	}
}

// The node repeats validate's warnings in its log at startup, at WARN,
// without the secret's value.
func TestRunLogsConfigWarningsAtStartup(t *testing.T) {
	runCLIChild()
	dir := t.TempDir()
	policies, err := filepath.Abs("../testdata/policies")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sluice.yaml")
	cfg := fmt.Sprintf("node:\n  name: n1\n  data_dir: %s\n  admin_listen: 127.0.0.1:0\n  admin_token: literal-admin-token-value\n  shutdown_timeout: 5s\nqueue:\n  max_bytes: 64MiB\npolicies:\n  dir: %s\n",
		filepath.Join(dir, "data"), policies)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCLI(t, "TestRunLogsConfigWarningsAtStartup", "run", "--config", path)
	p.waitRunning(t, "sluice run", 20*time.Second)
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20s of SIGTERM:\n%s", p.output())
	}
	out := p.output()
	if !strings.Contains(out, `level=WARN msg="insecure config" field=node.admin_token line=5 warning="a secret written in the file`) {
		t.Errorf("no startup warning for the admin token written in the file:\n%s", out)
	}
	if strings.Contains(out, "literal-admin-token-value") {
		t.Errorf("the admin token's value is in the log:\n%s", out)
	}
}
