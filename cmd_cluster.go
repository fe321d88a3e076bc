package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/cluster"
)

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Tools for a multi-node sluice"}
	var o cluster.CertOptions
	certs := &cobra.Command{
		Use:   "certs --out DIR --node node-1 --node node-2 --node node-3 [--host ADDR ...]",
		Short: "Make a route certificate per node (mutual TLS between nodes), and the cluster CA unless --out has one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cluster.GenerateCerts(o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (the CA; keep ca-key.pem off the nodes) and, per node, <node>.pem and <node>-key.pem\n", filepath.Join(o.Dir, "ca.pem"))
			for _, n := range o.Nodes {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s: cluster.tls {cert_file: %s, key_file: %s, ca_file: %s}\n", n,
					filepath.Join(o.Dir, n+".pem"), filepath.Join(o.Dir, n+"-key.pem"), filepath.Join(o.Dir, "ca.pem"))
			}
			return nil
		},
	}
	certs.Flags().StringVar(&o.Dir, "out", "certs", "directory to write to")
	certs.Flags().StringArrayVar(&o.Nodes, "node", nil, "a node name (repeat; each must be the node's node.name)")
	certs.Flags().StringArrayVar(&o.Hosts, "host", nil, "a DNS name or IP every node certificate also holds (repeat; the addresses in cluster.peers)")
	certs.Flags().DurationVar(&o.Validity, "valid-for", 2*365*24*time.Hour, "certificate lifetime")
	_ = certs.MarkFlagRequired("node")
	cmd.AddCommand(certs)
	return cmd
}
