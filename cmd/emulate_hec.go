package cmd

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/actors/sink/splunk/hectest"
)

func newEmulateHECCmd() *cobra.Command {
	var listen, token, out string
	var ack bool
	cmd := &cobra.Command{
		Use:   "hec",
		Short: "Run a Splunk HTTP Event Collector stand-in",
		RunE: func(cmd *cobra.Command, args []string) error {
			if token == "" {
				token = os.Getenv("SPLUNK_HEC_TOKEN")
			}
			if token == "" {
				return errors.New("--token (or SPLUNK_HEC_TOKEN) is required")
			}
			opts := hectest.Options{Token: token, Addr: listen, Ack: ack}
			if out != "" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
				if err != nil {
					return err
				}
				defer f.Close()
				opts.Out = f
			}
			s, err := hectest.NewServer(opts)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "HEC stand-in at %s/services/collector/event", s.URL)
			if out != "" {
				fmt.Fprintf(cmd.OutOrStdout(), ", accepted events to %s", out)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			ctx, stop := signalContext()
			defer stop()
			<-ctx.Done()
			fmt.Fprintf(cmd.OutOrStdout(), "accepted %d events\n", s.Count())
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8088", "address to listen on")
	cmd.Flags().StringVar(&token, "token", "", "the HEC token to accept (default $SPLUNK_HEC_TOKEN)")
	cmd.Flags().StringVar(&out, "out", "", "append each accepted event as one JSON line to this file")
	cmd.Flags().BoolVar(&ack, "ack", false, "require channels and answer indexer acknowledgement")
	return cmd
}
