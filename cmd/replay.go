package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/node/ops"
)

func newReplayCmd() *cobra.Command {
	var admin adminFlags
	var r replayFlags
	cmd := &cobra.Command{
		Use:   "replay --sink NAME --from TIME --to TIME",
		Short: "Send a retained window of records to a sink again (after SIEM downtime or data loss)",
		Long: `Replay re-delivers the records a sink already got in a window of store
times, from the buffer's retained window (queue.retain_delivered). With
--through-transform it re-runs the current policies on the RAW records of the
window instead. Replayed events carry the header Sluice-Replay and, in
Splunk, the indexed field sluice_replay=<job id>.

TIME is RFC 3339 (2026-11-24T10:00:00Z), "now", or relative to now (-6h, -90m).
The job runs in the node: closing this command does not stop it
(sluice replay cancel ID does).`,
		Args: cobra.NoArgs,
		// The window is read before the node is reached: a bad --from
		// fails first. (Not in PreRunE: that runs before cobra checks the
		// required flags.)
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := r.readWindow(); err != nil {
				return err
			}
			return admin.runE(r.replay)(cmd, args)
		},
	}
	admin.register(cmd)
	r.register(cmd)
	cmd.AddCommand(newReplayListCmd(&admin), newReplayCancelCmd(&admin))
	return cmd
}

// replayFlags are the request `sluice replay` sends, as its flags set it.
type replayFlags struct {
	req      ops.ReplayRequest
	from, to string
	detach   bool
}

func (r *replayFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&r.req.Sink, "sink", "", "the sink to replay to (required)")
	f.StringVar(&r.from, "from", "", "start of the window (required)")
	f.StringVar(&r.to, "to", "now", "end of the window")
	f.BoolVar(&r.req.ThroughTransform, "through-transform", false, "re-run the current policies on the window's RAW records")
	f.StringVar(&r.req.Source, "source", "", "with --through-transform: only this source's records")
	f.Float64Var(&r.req.Rate, "rate", 0, "records per second at most (0: as fast as the buffer takes them)")
	f.BoolVar(&r.req.DryRun, "dry-run", false, "only say how many records and bytes it would send")
	f.BoolVar(&r.detach, "detach", false, "start the job and return without following it")
	_ = cmd.MarkFlagRequired("sink")
	_ = cmd.MarkFlagRequired("from")
}

func (r *replayFlags) readWindow() error {
	now := time.Now()
	var err error
	if r.req.From, err = parseWhen(r.from, now); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if r.req.To, err = parseWhen(r.to, now); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	return nil
}

func (r *replayFlags) replay(cmd *cobra.Command, c *ops.Client, _ []string) error {
	return startJob(cmd, c, r.detach, func(ctx context.Context, out io.Writer) (*ops.JobStatus, error) {
		res, err := c.Replay(ctx, r.req)
		if err != nil {
			return nil, err
		}
		p := res.Plan
		fmt.Fprintf(out, "%s %d records (%s) in %d batches from %s (%s), stored %s – %s\n",
			map[bool]string{true: "would replay", false: "replaying"}[r.req.DryRun],
			p.Records, humanBytes(p.Bytes), p.Messages, p.Stream, p.Subject, p.From.UTC().Format(time.RFC3339), p.To.UTC().Format(time.RFC3339))
		return res.Job, nil
	})
}

func newReplayListCmd(admin *adminFlags) *cobra.Command {
	return &cobra.Command{Use: "list", Short: "List the node's replay and re-drive jobs", Args: cobra.NoArgs,
		RunE: admin.runE(func(cmd *cobra.Command, c *ops.Client, _ []string) error {
			jobs, err := c.Jobs(cmd.Context())
			if err != nil {
				return err
			}
			printJobs(cmd.OutOrStdout(), jobs)
			return nil
		})}
}

func newReplayCancelCmd(admin *adminFlags) *cobra.Command {
	return &cobra.Command{Use: "cancel ID", Short: "Stop a running job (what it sent stays sent)", Args: cobra.ExactArgs(1),
		RunE: admin.runE(func(cmd *cobra.Command, c *ops.Client, args []string) error {
			j, err := c.Cancel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s after %d of %d records\n", j.ID, j.State, j.Done.Records, j.Total.Records)
			return nil
		})}
}
