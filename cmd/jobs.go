package cmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/node/ops"
)

// startJob runs start (which asks the node for a job and prints its plan)
// under a context an interrupt cancels, then follows the job it started;
// a dry run starts none.
func startJob(cmd *cobra.Command, c *ops.Client, detach bool, start func(ctx context.Context, out io.Writer) (*ops.JobStatus, error)) error {
	ctx, stop := signalContext()
	defer stop()
	job, err := start(ctx, cmd.OutOrStdout())
	if err != nil || job == nil {
		return err
	}
	return followJob(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), c, *job, detach)
}

// followJob shows a job's progress until it ends. Interrupting only stops
// following: the job goes on in the node.
func followJob(ctx context.Context, out, errOut io.Writer, c *ops.Client, j ops.JobStatus, detach bool) error {
	fmt.Fprintf(out, "job %s started (sluice replay cancel %s stops it)\n", j.ID, j.ID)
	if detach {
		return nil
	}
	show, finish := jobProgress(errOut, j)
	final, err := c.WaitJob(ctx, j.ID, 250*time.Millisecond, show)
	finish()
	if ctx.Err() != nil {
		fmt.Fprintf(out, "stopped following; job %s goes on in the node (sluice replay list)\n", j.ID)
		return nil
	}
	if err != nil {
		return err
	}
	took := final.Finished.Sub(final.Started)
	fmt.Fprintf(out, "job %s %s: %d records (%s) back in the buffer in %s; the stages deliver them from there (sluice status shows them go)\n",
		final.ID, final.State, final.Done.Records, humanBytes(final.Done.Bytes), took.Round(time.Millisecond))
	if final.Skipped > 0 {
		fmt.Fprintf(out, "%d records were left in the DLQ (not re-drivable)\n", final.Skipped)
	}
	if final.State != ops.JobDone {
		return fmt.Errorf("job %s %s: %s", final.ID, final.State, final.Error)
	}
	return nil
}

// jobProgress draws a bar on a terminal; elsewhere it writes a line every
// 2 s and one when the job ends.
func jobProgress(errOut io.Writer, j ops.JobStatus) (show func(ops.JobStatus), finish func()) {
	if isTerminal(errOut) {
		bar := progressbar.NewOptions64(max(j.Total.Bytes, 1),
			progressbar.OptionSetWriter(errOut), progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(), progressbar.OptionClearOnFinish())
		show = func(s ops.JobStatus) {
			bar.Describe(fmt.Sprintf("%s %d/%d records", s.Kind, s.Done.Records, s.Total.Records))
			_ = bar.Set64(s.Done.Bytes)
		}
		return show, func() { _ = bar.Finish() }
	}
	last := time.Time{}
	show = func(s ops.JobStatus) {
		if time.Since(last) >= 2*time.Second || s.State != ops.JobRunning {
			last = time.Now()
			fmt.Fprintf(errOut, "%s %s: %d/%d records, %s\n", s.Kind, s.ID, s.Done.Records, s.Total.Records, humanBytes(s.Done.Bytes))
		}
	}
	return show, func() {}
}
