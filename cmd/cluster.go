package cmd

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/cluster"
)

func newClusterCertsCmd() *cobra.Command {
	var o cluster.CertOptions
	certs := &cobra.Command{
		Use:   "certs --out DIR --node node-1[=HOST,...] --node node-2 --node node-3 [--host ADDR ...]",
		Short: "Make a certificate per node (routes' mutual TLS; the admin API's and NATS client port's node.tls), and the CA unless --out has one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cluster.GenerateCerts(o); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			ca := filepath.Join(o.Dir, "ca.pem")
			fmt.Fprintf(out, "wrote %s (the CA; keep ca-key.pem off the nodes) and, per node, <node>.pem and <node>-key.pem\n", ca)
			for _, entry := range o.Nodes {
				n, _ := cluster.SplitNode(entry)
				cert, key := filepath.Join(o.Dir, n+".pem"), filepath.Join(o.Dir, n+"-key.pem")
				fmt.Fprintf(out, "  %s: cluster.tls {cert_file: %s, key_file: %s, ca_file: %s}\n", n, cert, key, ca)
				fmt.Fprintf(out, "  %s: node.tls {cert_file: %s, key_file: %s}\n", n, cert, key)
			}
			fmt.Fprintf(out, "operators: SLUICE_ADMIN_CA=%s sluice status --admin HOST:PORT; nats --tlsca %s\n", ca, ca)
			return nil
		},
	}
	certs.Flags().StringVar(&o.Dir, "out", "certs", "directory to write to")
	certs.Flags().StringArrayVar(&o.Nodes, "node", nil, "a node name (repeat; each must be the node's node.name); node-1=10.0.0.11,n1.example adds the addresses of that node's admin_listen and nats_listen")
	certs.Flags().StringArrayVar(&o.Hosts, "host", nil, "a DNS name or IP every node certificate also holds (repeat; the addresses in cluster.peers)")
	certs.Flags().DurationVar(&o.Validity, "valid-for", 2*365*24*time.Hour, "certificate lifetime")
	_ = certs.MarkFlagRequired("node")
	return certs
}
