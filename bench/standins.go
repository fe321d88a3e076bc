package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The stand-ins run as their own processes (`sluice emulate …`), so the
// CPU this process uses is the node's alone.

const (
	benchAKID  = "bench-key-id"
	benchAKKey = "bench-key-secret"
	benchToken = "bench-hec-token"
	// benchAdminToken guards the chaos nodes' admin API; the secret scan
	// looks for it with the others.
	benchAdminToken = "bench-admin-token-7f3a"
	// benchNATSPassword is the chaos nodes' NATS operator password.
	benchNATSPassword = "bench-nats-operator-9c1e"
)

// workspace makes a temporary directory holding a freshly built sluice
// binary; the caller removes it.
func workspace(scenario string) (dir, bin string, err error) {
	dir, err = os.MkdirTemp("", "sluice-bench-"+scenario+"-")
	if err != nil {
		return "", "", err
	}
	if bin, err = buildSluice(dir); err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	return dir, bin, nil
}

// sizeFlags declares -mb and -runs, which most scenarios take.
func sizeFlags(fs *flag.FlagSet, mb int, mbHelp string, runs int, runsHelp string) (mbs, runsp *int) {
	return fs.Int("mb", mb, mbHelp), fs.Int("runs", runs, runsHelp)
}

// setUp parses a scenario's flags and makes its workspace: a temporary
// directory holding a freshly built sluice binary, which the caller
// removes. On failure it exits as a bad flag does (flag.ExitOnError), with
// main's message: nothing runs yet that would need stopping.
func setUp(fs *flag.FlagSet, args []string) (tmp, bin string) {
	_ = fs.Parse(args)
	tmp, bin, err := workspace(fs.Name())
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	return tmp, bin
}

// buildSluice builds the sluice binary of this repository once into dir.
func buildSluice(dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sluice")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build sluice: %w", err)
	}
	return bin, nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcess runs bin with args and waits for its first line of output.
func startProcess(bin string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case ready <- sc.Text():
			default:
			}
		}
	}()
	select {
	case line := <-ready:
		if !strings.Contains(line, "stand-in at") {
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("%s %v: %s", bin, args, line)
		}
		return cmd, nil
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%s %v: not ready", bin, args)
	}
}

func stop(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
}

// standins are a run's SLS and HEC stand-ins, each in its own process.
type standins struct {
	sls, hec       string // their addresses
	slsCmd, hecCmd *exec.Cmd
}

// startStandins starts the SLS stand-in with records on shards (slsExtra:
// more of its flags) and the HEC stand-in; stop stops both.
func startStandins(bin string, records, shards int, slsExtra ...string) (*standins, error) {
	s := &standins{sls: freeAddr(), hec: freeAddr()}
	var err error
	if s.slsCmd, err = startSLS(bin, s.sls, records, shards, slsExtra...); err != nil {
		return nil, err
	}
	if s.hecCmd, err = startHEC(bin, s.hec); err != nil {
		stop(s.slsCmd)
		return nil, err
	}
	return s, nil
}

func (s *standins) stop() {
	stop(s.hecCmd)
	stop(s.slsCmd)
}

func startSLS(bin, addr string, records, shards int, extra ...string) (*exec.Cmd, error) {
	args := append([]string{"emulate", "sls", "--listen", addr, "--records", fmt.Sprint(records), "--shards", fmt.Sprint(shards),
		"--access-key-id", benchAKID, "--access-key-secret", benchAKKey}, extra...)
	return startProcess(bin, args...)
}

func startHEC(bin, addr string) (*exec.Cmd, error) {
	return startProcess(bin, "emulate", "hec", "--listen", addr, "--token", benchToken)
}
