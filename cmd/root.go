// Package cmd is sluice's command line: run, validate, dev, policy, the
// stand-ins (emulate) and the operator commands (status, replay, dlq,
// backlog, cluster). Each command is a thin shell over node, node/ops and the
// stand-ins; main.go only calls Main.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/actors/builtin"
	"github.com/sluicehq/sluice/internal/conf"
	"github.com/sluicehq/sluice/node"
)

// Main runs the command line of os.Args and returns the exit status.
// devPolicies are the policies `sluice dev` starts with.
func Main(devPolicies fs.FS) int {
	if err := newRootCmd(devPolicies).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		var exit exitCode
		if errors.As(err, &exit) {
			return int(exit)
		}
		return 1
	}
	return 0
}

// exitCode lets a command choose its exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRootCmd(devPolicies fs.FS) *cobra.Command {
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Ship security logs from SLS and GCS to Splunk and BigQuery, durably buffered",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	emulate := &cobra.Command{Use: "emulate", Short: "Run a stand-in for an outside service (for demos, benchmarks, tests)"}
	emulate.AddCommand(newEmulateHECCmd(), newEmulateSLSCmd(), newEmulateGCSCmd(), newEmulateBigQueryCmd())
	cluster := &cobra.Command{Use: "cluster", Short: "Tools for a multi-node sluice"}
	cluster.AddCommand(newClusterCertsCmd())
	root.AddCommand(newRunCmd(), newValidateCmd(), newDevCmd(devPolicies), newPolicyCmd(), emulate,
		newStatusCmd(), newReplayCmd(), newDLQCmd(), newBacklogCmd(), cluster)
	return root
}

func newRunCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a node from a config file",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := node.Load(path, builtin.Registry())
			if err != nil {
				return err
			}
			log := newLogger(os.Stderr, cfg.Node.LogLevel, cfg.Node.LogFormat)
			setMemoryLimit(*cfg.Node.MemoryLimit, log)
			ctx, stop := signalContext()
			defer stop()
			go node.ReleaseMemoryWhenIdle(ctx, log)
			n, err := node.New(cfg, node.Options{Logger: log})
			if err != nil {
				return err
			}
			return n.Run(ctx)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "sluice.yaml", "config file")
	return cmd
}

func newValidateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a config file and exit non-zero with the field at fault; warn about each insecure choice",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := node.Load(path, builtin.Registry())
			if err != nil {
				return err
			}
			// Warnings go with the verdict: an insecure choice is allowed,
			// never silent.
			for _, w := range cfg.Warnings() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: warning: %s\n", path, w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "sluice.yaml", "config file")
	return cmd
}

// setMemoryLimit applies node.memory_limit to this process, unless the
// environment's GOMEMLIMIT already did.
func setMemoryLimit(limit conf.ByteSize, log *slog.Logger) {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		log.Info("memory limit from GOMEMLIMIT; node.memory_limit ignored", "GOMEMLIMIT", env)
		return
	}
	if limit > 0 {
		debug.SetMemoryLimit(int64(limit))
		log.Debug("soft memory limit set", "limit", limit.String())
	}
}

// signalContext is done on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
