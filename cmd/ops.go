package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sluicehq/sluice/node/ops"
)

// adminFlags are how the operations commands reach a node. The token is
// never a flag: argv is visible to every user of the host (ps, /proc).
type adminFlags struct {
	addr      string
	tokenFile string
	// A node with node.tls: the CA that signed its certificate and, when
	// it asks for one (node.tls.client_ca_file), a client certificate.
	caFile, certFile, keyFile string
}

func (a *adminFlags) register(cmd *cobra.Command) {
	def := os.Getenv("SLUICE_ADMIN")
	if def == "" {
		def = "127.0.0.1:8686"
	}
	f := cmd.PersistentFlags()
	f.StringVar(&a.addr, "admin", def, "the node's admin address, host:port or a URL; https:// for a node with node.tls (env SLUICE_ADMIN)")
	f.StringVar(&a.tokenFile, "admin-token-file", "", "file holding the admin bearer token (else env SLUICE_ADMIN_TOKEN)")
	f.StringVar(&a.caFile, "admin-ca-file", os.Getenv("SLUICE_ADMIN_CA"), "CA certificate the node's node.tls certificate is signed by; makes a bare host:port https (env SLUICE_ADMIN_CA)")
	f.StringVar(&a.certFile, "admin-cert-file", os.Getenv("SLUICE_ADMIN_CERT"), "client certificate, for a node with node.tls.client_ca_file (env SLUICE_ADMIN_CERT)")
	f.StringVar(&a.keyFile, "admin-key-file", os.Getenv("SLUICE_ADMIN_KEY"), "the client certificate's key (env SLUICE_ADMIN_KEY)")
}

func (a *adminFlags) client() (*ops.Client, error) {
	token := os.Getenv("SLUICE_ADMIN_TOKEN")
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if a.caFile == "" && a.certFile == "" && a.keyFile == "" {
		return ops.NewClient(a.addr, token), nil
	}
	tc, err := ops.ClientTLS(a.caFile, a.certFile, a.keyFile)
	if err != nil {
		return nil, err
	}
	return ops.NewTLSClient(a.addr, token, tc), nil
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newStatusCmd() *cobra.Command {
	var admin adminFlags
	var watch, asJSON bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the whole pipeline of a running node: sources, buffer, sinks, policies, DLQ, jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := admin.client()
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			out := cmd.OutOrStdout()
			tty := isTerminal(out)
			for {
				st, err := c.Status(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				if asJSON {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					if err := enc.Encode(st); err != nil {
						return err
					}
				} else {
					if watch && tty {
						fmt.Fprint(out, "\x1b[H\x1b[2J") // redraw in place
					}
					printStatus(out, st)
				}
				if !watch {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(every):
				}
				if !tty && !asJSON {
					fmt.Fprintln(out, strings.Repeat("-", 60))
				}
			}
		},
	}
	admin.register(cmd)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&every, "interval", 2*time.Second, "refresh interval with --watch")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (for scripts)")
	return cmd
}

func newReplayCmd() *cobra.Command {
	var admin adminFlags
	var req ops.ReplayRequest
	var from, to string
	var detach bool
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
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			var err error
			if req.From, err = parseWhen(from, now); err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			if req.To, err = parseWhen(to, now); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			c, err := admin.client()
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			res, err := c.Replay(ctx, req)
			if err != nil {
				return err
			}
			p := res.Plan
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d records (%s) in %d batches from %s (%s), stored %s – %s\n",
				map[bool]string{true: "would replay", false: "replaying"}[req.DryRun],
				p.Records, humanBytes(p.Bytes), p.Messages, p.Stream, p.Subject, p.From.UTC().Format(time.RFC3339), p.To.UTC().Format(time.RFC3339))
			if res.Job == nil {
				return nil
			}
			return followJob(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), c, *res.Job, detach)
		},
	}
	admin.register(cmd)
	f := cmd.Flags()
	f.StringVar(&req.Sink, "sink", "", "the sink to replay to (required)")
	f.StringVar(&from, "from", "", "start of the window (required)")
	f.StringVar(&to, "to", "now", "end of the window")
	f.BoolVar(&req.ThroughTransform, "through-transform", false, "re-run the current policies on the window's RAW records")
	f.StringVar(&req.Source, "source", "", "with --through-transform: only this source's records")
	f.Float64Var(&req.Rate, "rate", 0, "records per second at most (0: as fast as the buffer takes them)")
	f.BoolVar(&req.DryRun, "dry-run", false, "only say how many records and bytes it would send")
	f.BoolVar(&detach, "detach", false, "start the job and return without following it")
	_ = cmd.MarkFlagRequired("sink")
	_ = cmd.MarkFlagRequired("from")

	list := &cobra.Command{Use: "list", Short: "List the node's replay and re-drive jobs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := admin.client()
			if err != nil {
				return err
			}
			jobs, err := c.Jobs(cmd.Context())
			if err != nil {
				return err
			}
			printJobs(cmd.OutOrStdout(), jobs)
			return nil
		}}
	cancel := &cobra.Command{Use: "cancel ID", Short: "Stop a running job (what it sent stays sent)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := admin.client()
			if err != nil {
				return err
			}
			j, err := c.Cancel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s after %d of %d records\n", j.ID, j.State, j.Done.Records, j.Total.Records)
			return nil
		}}
	cmd.AddCommand(list, cancel)
	return cmd
}

func newDLQCmd() *cobra.Command {
	var admin adminFlags
	cmd := &cobra.Command{Use: "dlq", Short: "Inspect, re-drive or purge the dead-letter queue"}
	admin.register(cmd)

	var f ops.DLQFilter
	var since string
	var asJSON, dryRun, detach, yes bool
	filterFlags := func(c *cobra.Command) {
		c.Flags().StringVar(&f.Stage, "stage", "", "fetch, transform or sink")
		c.Flags().StringVar(&f.Name, "name", "", "the source, transform or sink name")
		c.Flags().StringVar(&f.Reason, "reason", "", "records whose reason contains this")
		c.Flags().StringVar(&since, "since", "", "records dead-lettered at or after (RFC 3339 or -24h)")
	}
	// clientAndFilter is what every filtered dlq command starts with.
	clientAndFilter := func() (*ops.Client, ops.DLQFilter, error) {
		c, err := admin.client()
		if err != nil {
			return nil, f, err
		}
		if since != "" {
			t, err := parseWhen(since, time.Now())
			if err != nil {
				return nil, f, fmt.Errorf("--since: %w", err)
			}
			f.Since = t
		}
		return c, f, nil
	}

	list := &cobra.Command{Use: "list", Short: "Count dead-lettered records by stage, name and reason, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, flt, err := clientAndFilter()
			if err != nil {
				return err
			}
			groups, err := c.DLQGroups(cmd.Context(), flt)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), groups)
			}
			printDLQ(cmd.OutOrStdout(), groups)
			return nil
		}}
	filterFlags(list)
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	show := &cobra.Command{Use: "show ID", Short: "Show one dead-lettered record: the record, its headers, reason and attempts", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := admin.client()
			if err != nil {
				return err
			}
			var seq uint64
			if _, err := fmt.Sscan(args[0], &seq); err != nil {
				return fmt.Errorf("ID %q: not a number (sluice dlq list shows example IDs)", args[0])
			}
			e, err := c.DLQShow(cmd.Context(), seq)
			if err != nil {
				return err
			}
			return writeJSONTo(cmd.OutOrStdout(), e)
		}}

	redrive := &cobra.Command{Use: "redrive", Short: "Send dead-lettered records back to the stage that failed them (after fixing the cause)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, flt, err := clientAndFilter()
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			res, err := c.Redrive(ctx, flt, dryRun)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s %d records (%s)\n", map[bool]string{true: "would re-drive", false: "re-driving"}[dryRun], res.Plan.Count.Records, humanBytes(res.Plan.Count.Bytes))
			for why, n := range res.Plan.Skipped {
				fmt.Fprintf(out, "leaving %d records in the DLQ: %s\n", n, why)
			}
			if res.Job == nil {
				return nil
			}
			return followJob(ctx, out, cmd.ErrOrStderr(), c, *res.Job, detach)
		}}
	filterFlags(redrive)
	redrive.Flags().BoolVar(&dryRun, "dry-run", false, "only count what would be re-driven")
	redrive.Flags().BoolVar(&detach, "detach", false, "start the job and return without following it")

	purge := &cobra.Command{Use: "purge", Short: "Delete dead-lettered records for good (asks for confirmation)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, flt, err := clientAndFilter()
			if err != nil {
				return err
			}
			groups, err := c.DLQGroups(cmd.Context(), flt)
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
				if !isTerminal(cmd.InOrStdin()) {
					return fmt.Errorf("purge deletes %d records for good: confirm with --yes", total)
				}
				printDLQ(cmd.OutOrStdout(), groups)
				fmt.Fprintf(cmd.OutOrStdout(), "Delete these %d records for good? Type 'purge' to confirm: ", total)
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if strings.TrimSpace(line) != "purge" {
					return fmt.Errorf("not confirmed; nothing deleted")
				}
			}
			n, err := c.PurgeDLQ(cmd.Context(), flt)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "purged %d records\n", n)
			return nil
		}}
	filterFlags(purge)
	purge.Flags().BoolVar(&yes, "yes", false, "do not ask")

	cmd.AddCommand(list, show, redrive, purge)
	return cmd
}

// followJob shows a job's progress until it ends. Interrupting only stops
// following: the job goes on in the node.
func followJob(ctx context.Context, out, errOut io.Writer, c *ops.Client, j ops.JobStatus, detach bool) error {
	fmt.Fprintf(out, "job %s started (sluice replay cancel %s stops it)\n", j.ID, j.ID)
	if detach {
		return nil
	}
	var show func(ops.JobStatus)
	var finish func()
	if isTerminal(errOut) {
		bar := progressbar.NewOptions64(max(j.Total.Bytes, 1),
			progressbar.OptionSetWriter(errOut), progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(), progressbar.OptionClearOnFinish())
		show = func(s ops.JobStatus) {
			bar.Describe(fmt.Sprintf("%s %d/%d records", s.Kind, s.Done.Records, s.Total.Records))
			_ = bar.Set64(s.Done.Bytes)
		}
		finish = func() { _ = bar.Finish() }
	} else {
		last := time.Time{}
		show = func(s ops.JobStatus) {
			if time.Since(last) >= 2*time.Second || s.State != ops.JobRunning {
				last = time.Now()
				fmt.Fprintf(errOut, "%s %s: %d/%d records, %s\n", s.Kind, s.ID, s.Done.Records, s.Total.Records, humanBytes(s.Done.Bytes))
			}
		}
		finish = func() {}
	}
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

// parseWhen reads RFC 3339, "now", or a duration before now ("-6h" or "6h").
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339 (2026-11-24T10:00:00Z), now, or a time ago such as -6h", s)
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
