package cmd

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/node/ops"
)

func newBacklogCmd() *cobra.Command {
	var admin adminFlags
	cmd := &cobra.Command{Use: "backlog", Short: "List, move or drop the backlogs of sinks and sources no longer configured",
		Long: `A sink renamed or removed from the config leaves its undelivered batches on
out.<old name> (held by the consumer sink-<old name>); nothing delivers them
and they take buffer space. A source removed leaves what the transform has
not taken yet on raw.<old name>. sluice status names them too.`}
	admin.register(cmd)
	cmd.AddCommand(newBacklogListCmd(&admin), newBacklogMoveCmd(&admin), newBacklogDropCmd(&admin))
	return cmd
}

func newBacklogListCmd(admin *adminFlags) *cobra.Command {
	var asJSON bool
	list := &cobra.Command{Use: "list", Short: "Name every backlog that belongs to no configured sink or source", Args: cobra.NoArgs,
		RunE: admin.runE(func(cmd *cobra.Command, c *ops.Client, _ []string) error {
			orphans, err := c.Backlog(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), orphans)
			}
			if len(orphans) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "every backlog belongs to a configured sink or source")
				return nil
			}
			printOrphans(cmd.OutOrStdout(), orphans)
			return nil
		})}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return list
}

func newBacklogMoveCmd(admin *adminFlags) *cobra.Command {
	var req ops.MoveRequest
	var detach bool
	move := &cobra.Command{Use: "move --from OLD --to SINK", Short: "Send an unconfigured sink's undelivered batches to a configured sink, then remove them from the old one",
		Long: `Each undelivered batch of out.<from> is published to out.<to> with the message ID
move/<to>/<its old ID>, and once every copy is stored the consumer
sink-<from> is deleted and out.<from> purged up to what was moved. Running it
again moves nothing twice. Run it once every node runs the new config.`,
		Args: cobra.NoArgs,
		RunE: admin.runE(func(cmd *cobra.Command, c *ops.Client, _ []string) error {
			return startJob(cmd, c, detach, func(ctx context.Context, out io.Writer) (*ops.JobStatus, error) {
				res, err := c.MoveBacklog(ctx, req)
				if err != nil {
					return nil, err
				}
				p := res.Plan
				verb := map[bool]string{true: "would move", false: "moving"}[req.DryRun]
				fmt.Fprintf(out, "%s %d records (%s) in %d batches from %s to %s\n", verb, p.Records, humanBytes(p.Bytes), p.Messages, p.Subject, "out."+p.To)
				if res.Job == nil && !req.DryRun {
					fmt.Fprintf(out, "nothing left to move; %s cleaned up\n", p.Subject)
				}
				return res.Job, nil
			})
		})}
	move.Flags().StringVar(&req.From, "from", "", "the sink no longer configured (required)")
	move.Flags().StringVar(&req.To, "to", "", "the configured sink to deliver it (required)")
	move.Flags().BoolVar(&req.DryRun, "dry-run", false, "only count what would move")
	move.Flags().BoolVar(&detach, "detach", false, "start the job and return without following it")
	_ = move.MarkFlagRequired("from")
	_ = move.MarkFlagRequired("to")
	return move
}

func newBacklogDropCmd(admin *adminFlags) *cobra.Command {
	var drop ops.DropRequest
	var yes bool
	cmd := &cobra.Command{Use: "drop --sink OLD | --source OLD", Short: "Delete an unconfigured sink's or source's backlog for good (asks for confirmation)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (drop.Sink == "") == (drop.Source == "") {
				return fmt.Errorf("name one of --sink or --source")
			}
			return admin.runE(func(cmd *cobra.Command, c *ops.Client, _ []string) error {
				if !yes {
					if err := confirmDrop(cmd, c, drop); err != nil {
						return err
					}
				}
				d, err := c.DropBacklog(cmd.Context(), drop)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "dropped %d batches of %s %s", d.Messages, d.Stream, d.Subject)
				if d.Consumer != "" {
					fmt.Fprintf(cmd.OutOrStdout(), " and the consumer %s", d.Consumer)
				}
				fmt.Fprintln(cmd.OutOrStdout())
				return nil
			})(cmd, args)
		}}
	cmd.Flags().StringVar(&drop.Sink, "sink", "", "the sink no longer configured")
	cmd.Flags().StringVar(&drop.Source, "source", "", "the source no longer configured")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask")
	return cmd
}

// confirmDrop asks before a drop, naming how many undelivered batches it
// deletes.
func confirmDrop(cmd *cobra.Command, c *ops.Client, drop ops.DropRequest) error {
	want := "out." + drop.Sink
	if drop.Source != "" {
		want = "raw." + drop.Source
	}
	orphans, err := c.Backlog(cmd.Context())
	if err != nil {
		return err
	}
	var n uint64
	for _, o := range orphans {
		if o.Subject == want {
			n = o.Messages
		}
	}
	what := fmt.Sprintf("every batch of %s (%d undelivered)", want, n)
	return confirmDelete(cmd, "drop", what, "Delete "+what+" for good?")
}
