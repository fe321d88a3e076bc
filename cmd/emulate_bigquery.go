package cmd

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/actors/sink/bigquery/bqtest"
)

func newEmulateBigQueryCmd() *cobra.Command {
	var listen, grpcListen, project, dump string
	var propagation time.Duration
	var discard bool
	cmd := &cobra.Command{
		Use:   "bigquery",
		Short: "Run a BigQuery stand-in: the REST tables API and the Storage Write API",
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := bqtest.NewServer(bqtest.Options{Project: project, Addr: listen, GRPCAddr: grpcListen, Propagation: propagation, Discard: discard})
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "BigQuery stand-in at %s (REST: endpoint) and %s (Storage Write: write_endpoint), project %s\n", s.URL, s.GRPCAddr, project)
			ctx, stop := signalContext()
			defer stop()
			<-ctx.Done()
			for _, t := range s.Tables(project) {
				ds, table, _ := strings.Cut(t, ".")
				n := s.RowCount(project, ds, table)
				if dump == "" {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rows\n", t, n)
					continue
				}
				path, _, err := s.DumpFile(project, t, dump)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rows in %s\n", t, n, path)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9050", "address of the REST API")
	cmd.Flags().StringVar(&grpcListen, "grpc-listen", "127.0.0.1:9060", "address of the Storage Write gRPC API")
	cmd.Flags().StringVar(&project, "project", "sluice-dev", "the project")
	cmd.Flags().StringVar(&dump, "dump", "", "on exit, write each table's rows as JSON lines to DIR/<dataset>.<table>.ndjson")
	cmd.Flags().BoolVar(&discard, "discard", false, "count appended rows without keeping them (benchmarks)")
	cmd.Flags().DurationVar(&propagation, "propagation", 0, "how long a widened schema takes to reach the write API (BigQuery: up to minutes)")
	return cmd
}
