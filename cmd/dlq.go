package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/node/ops"
)

func newDLQCmd() *cobra.Command {
	var admin adminFlags
	cmd := &cobra.Command{Use: "dlq", Short: "Inspect, re-drive or purge the dead-letter queue"}
	admin.register(cmd)
	cmd.AddCommand(newDLQListCmd(&admin), newDLQShowCmd(&admin), newDLQRedriveCmd(&admin), newDLQPurgeCmd(&admin))
	return cmd
}

// dlqFilterFlags are the flags of the dlq commands that select records.
type dlqFilterFlags struct {
	f     ops.DLQFilter
	since string
}

func (d *dlqFilterFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&d.f.Stage, "stage", "", "fetch, transform or sink")
	c.Flags().StringVar(&d.f.Name, "name", "", "the source, transform or sink name")
	c.Flags().StringVar(&d.f.Reason, "reason", "", "records whose reason contains this")
	c.Flags().StringVar(&d.since, "since", "", "records dead-lettered at or after (RFC 3339 or -24h)")
}

// runE makes a RunE that connects to the node, reads the filter, then runs.
func (d *dlqFilterFlags) runE(admin *adminFlags, run func(cmd *cobra.Command, c *ops.Client, f ops.DLQFilter) error) func(*cobra.Command, []string) error {
	return admin.runE(func(cmd *cobra.Command, c *ops.Client, _ []string) error {
		if d.since != "" {
			t, err := parseWhen(d.since, time.Now())
			if err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			d.f.Since = t
		}
		return run(cmd, c, d.f)
	})
}

func newDLQListCmd(admin *adminFlags) *cobra.Command {
	var d dlqFilterFlags
	var asJSON bool
	list := &cobra.Command{Use: "list", Short: "Count dead-lettered records by stage, name and reason, newest first", Args: cobra.NoArgs,
		RunE: d.runE(admin, func(cmd *cobra.Command, c *ops.Client, f ops.DLQFilter) error {
			groups, err := c.DLQGroups(cmd.Context(), f)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), groups)
			}
			printDLQ(cmd.OutOrStdout(), groups)
			return nil
		})}
	d.register(list)
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return list
}

func newDLQShowCmd(admin *adminFlags) *cobra.Command {
	return &cobra.Command{Use: "show ID", Short: "Show one dead-lettered record: the record, its headers, reason and attempts", Args: cobra.ExactArgs(1),
		RunE: admin.runE(func(cmd *cobra.Command, c *ops.Client, args []string) error {
			var seq uint64
			if _, err := fmt.Sscan(args[0], &seq); err != nil {
				return fmt.Errorf("ID %q: not a number (sluice dlq list shows example IDs)", args[0])
			}
			e, err := c.DLQShow(cmd.Context(), seq)
			if err != nil {
				return err
			}
			return writeJSONTo(cmd.OutOrStdout(), e)
		})}
}

func newDLQRedriveCmd(admin *adminFlags) *cobra.Command {
	var d dlqFilterFlags
	var dryRun, detach bool
	redrive := &cobra.Command{Use: "redrive", Short: "Send dead-lettered records back to the stage that failed them (after fixing the cause)", Args: cobra.NoArgs,
		RunE: d.runE(admin, func(cmd *cobra.Command, c *ops.Client, f ops.DLQFilter) error {
			return startJob(cmd, c, detach, func(ctx context.Context, out io.Writer) (*ops.JobStatus, error) {
				res, err := c.Redrive(ctx, f, dryRun)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(out, "%s %d records (%s)\n", map[bool]string{true: "would re-drive", false: "re-driving"}[dryRun], res.Plan.Count.Records, humanBytes(res.Plan.Count.Bytes))
				for why, n := range res.Plan.Skipped {
					fmt.Fprintf(out, "leaving %d records in the DLQ: %s\n", n, why)
				}
				return res.Job, nil
			})
		})}
	d.register(redrive)
	redrive.Flags().BoolVar(&dryRun, "dry-run", false, "only count what would be re-driven")
	redrive.Flags().BoolVar(&detach, "detach", false, "start the job and return without following it")
	return redrive
}

func newDLQPurgeCmd(admin *adminFlags) *cobra.Command {
	var d dlqFilterFlags
	var yes bool
	purge := &cobra.Command{Use: "purge", Short: "Delete dead-lettered records for good (asks for confirmation)", Args: cobra.NoArgs,
		RunE: d.runE(admin, func(cmd *cobra.Command, c *ops.Client, f ops.DLQFilter) error {
			return purgeDLQ(cmd, c, f, yes)
		})}
	d.register(purge)
	purge.Flags().BoolVar(&yes, "yes", false, "do not ask")
	return purge
}

// purgeDLQ deletes the records f selects, once confirmed (or with --yes).
func purgeDLQ(cmd *cobra.Command, c *ops.Client, f ops.DLQFilter, yes bool) error {
	groups, err := c.DLQGroups(cmd.Context(), f)
	if err != nil {
		return err
	}
	total := 0
	for _, g := range groups {
		total += g.Count
	}
	if total == 0 {
		fmt.Fprintln(cmd.OutOrStdout(), "nothing to purge")
		return nil
	}
	if !yes {
		// On a terminal the question comes under what it deletes.
		var ask strings.Builder
		printDLQ(&ask, groups)
		fmt.Fprintf(&ask, "Delete these %d records for good?", total)
		if err := confirmDelete(cmd, "purge", fmt.Sprintf("%d records", total), ask.String()); err != nil {
			return err
		}
	}
	n, err := c.PurgeDLQ(cmd.Context(), f)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "purged %d records\n", n)
	return nil
}
