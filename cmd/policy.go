package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/rego"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Test and try Rego policies"}
	var verbose bool
	test := &cobra.Command{
		Use:   "test DIR",
		Short: "Run the test_ rules of a policy directory, like opa test",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := rego.RunTests(context.Background(), args[0], cmd.OutOrStdout(), verbose)
			if err != nil {
				return err
			}
			if res.Failed+res.Errors > 0 {
				return exitCode(2)
			}
			return nil
		},
	}
	test.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every test")
	var dir, schema, input, event string
	eval := &cobra.Command{
		Use:   "eval",
		Short: "Print what the policies make of one record (--schema) or one source event (--event)",
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := rego.Load(dir, rego.Options{})
			if err != nil {
				return err
			}
			var out any
			switch {
			case event != "":
				data, err := os.ReadFile(event)
				if err != nil {
					return err
				}
				out, err = e.EventSources(context.Background(), data)
				if err != nil {
					return fmt.Errorf("%s: %w", event, err)
				}
			case schema != "" && input != "":
				data, err := os.ReadFile(input)
				if err != nil {
					return err
				}
				out, err = e.Outputs(context.Background(), schema, data)
				if err != nil {
					return fmt.Errorf("%s: %w", input, err)
				}
			default:
				return fmt.Errorf("give --schema NAME --input FILE, or --event FILE")
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
	eval.Flags().StringVar(&dir, "policy", "policies", "policy directory")
	eval.Flags().StringVar(&schema, "schema", "", "schema policy to run (data.schema.NAME.log)")
	eval.Flags().StringVar(&input, "input", "", "a JSON file holding one record")
	eval.Flags().StringVar(&event, "event", "", "a JSON file holding one source event (runs data.event.src)")
	cmd.AddCommand(test, eval)
	return cmd
}
