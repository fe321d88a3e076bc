package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/conf"
	"github.com/sluicehq/sluice/node"
)

func newDevCmd() *cobra.Command {
	var dataDir, admin string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run one node on this machine with stand-ins for the cloud services",
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				cache, err := os.UserCacheDir()
				if err != nil {
					cache = os.TempDir()
				}
				dataDir = filepath.Join(cache, "sluice-dev")
			}
			cfg := &node.Config{}
			cfg.Node = node.NodeConfig{Name: "dev", DataDir: dataDir, AdminListen: admin, NATSListen: "127.0.0.1:-1", LogLevel: "info", LogFormat: "text", ShutdownTimeout: conf.Duration(30e9)}
			cfg.Queue = node.QueueConfig{MaxBytes: 4 << 30, RetainDelivered: conf.Duration(72 * 3600e9), Sync: "interval", DuplicateWindow: conf.Duration(600e9)}
			log := newLogger(os.Stderr, "info", "text")
			ctx, stop := signalContext()
			defer stop()
			n, err := node.New(cfg, node.Options{Logger: log})
			if err != nil {
				return err
			}
			go func() {
				select {
				case <-n.Started():
					fmt.Fprintf(cmd.OutOrStdout(), "sluice dev\n  data dir: %s\n  admin:    http://%s (/healthz /readyz /metrics)\n  nats:     %s\n", dataDir, n.AdminAddr(), n.Queue.ClientURL())
				case <-ctx.Done():
				}
			}()
			return n.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "where the buffer lives (default: <user cache dir>/sluice-dev)")
	cmd.Flags().StringVar(&admin, "admin", "127.0.0.1:8686", "admin HTTP address")
	return cmd
}
