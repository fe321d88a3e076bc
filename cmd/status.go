package cmd

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/node/ops"
	"github.com/sluicehq/sluice/rego"
)

func newStatusCmd() *cobra.Command {
	var admin adminFlags
	var s statusWatch
	cmd := &cobra.Command{Use: "status", Short: "Show the whole pipeline of a running node: sources, buffer, sinks, policies, DLQ, jobs", Args: cobra.NoArgs,
		RunE: admin.runE(s.run)}
	admin.register(cmd)
	cmd.Flags().BoolVarP(&s.watch, "watch", "w", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&s.every, "interval", 2*time.Second, "refresh interval with --watch")
	cmd.Flags().BoolVar(&s.asJSON, "json", false, "print JSON (for scripts)")
	return cmd
}

// statusWatch prints a node's status once or, with --watch, until
// interrupted.
type statusWatch struct {
	watch, asJSON bool
	every         time.Duration
}

func (s *statusWatch) run(cmd *cobra.Command, c *ops.Client, _ []string) error {
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
		if err := s.print(out, st, tty); err != nil {
			return err
		}
		if !s.watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.every):
		}
		if !tty && !s.asJSON {
			fmt.Fprintln(out, strings.Repeat("-", 60))
		}
	}
}

func (s *statusWatch) print(out io.Writer, st *ops.Status, tty bool) error {
	if s.asJSON {
		return writeJSONTo(out, st)
	}
	if s.watch && tty {
		fmt.Fprint(out, "\x1b[H\x1b[2J") // redraw in place
	}
	printStatus(out, st)
	return nil
}

// printStatus writes the one-screen status as aligned plain text.
func printStatus(w io.Writer, st *ops.Status) {
	fmt.Fprintf(w, "node %s   %s\n", st.Node, st.Time.Format(time.RFC3339))
	for _, s := range st.Insecure {
		fmt.Fprintf(w, "INSECURE %s: %s is true (sluice validate says what it exposes)\n", s.What, s.Setting)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	printSources(w, tw, st.Sources)
	printBuffer(w, tw, st.Streams)
	printSinks(w, tw, st.Sinks)
	tw.Flush()

	if len(st.Orphans) > 0 {
		fmt.Fprintln(w, "\nBACKLOGS OF NO CONFIGURED SINK OR SOURCE (nothing delivers them; they take buffer space)")
		printOrphans(w, st.Orphans)
	}
	printPolicies(w, st.Policies)
	fmt.Fprintln(w, "\nDLQ")
	if len(st.DLQ) == 0 {
		fmt.Fprintln(w, "  empty")
	} else {
		printDLQ(w, st.DLQ)
	}
	if len(st.Jobs) > 0 {
		fmt.Fprintln(w, "\nJOBS")
		printJobs(w, st.Jobs)
	}
	if st.Cluster != nil {
		printCluster(w, st.Cluster, st.Streams)
	}
	for _, e := range st.Errors {
		fmt.Fprintf(w, "\n(could not read %s)\n", e)
	}
}

// section starts a table of the status: what tw holds so far is written
// first, the title goes straight to w, the header into tw.
func section(w io.Writer, tw *tabwriter.Writer, title, header string) {
	tw.Flush()
	fmt.Fprintf(w, "\n%s\n", title)
	fmt.Fprintln(tw, header)
}

func printSources(w io.Writer, tw *tabwriter.Writer, sources []ops.SourceStatus) {
	section(w, tw, "SOURCES", "NAME\tTYPE\tPART\tCHECKPOINT\tLAG\tREC/S\tMB/S\tRECORDS\tERRORS")
	for _, s := range sources {
		if len(s.Parts) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t(no data yet)\t\t\t\t\t\t\n", s.Name, s.Type)
		}
		for _, p := range s.Parts {
			cp := "-"
			if p.CheckpointTime != nil {
				cp = p.CheckpointTime.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%.2f\t%.0f\t%.0f\n", s.Name, s.Type, p.ID, cp, seconds(p.LagSeconds),
				p.RecordsPerSecond, p.BytesPerSecond/1e6, p.Records, p.Errors)
		}
	}
}

func printBuffer(w io.Writer, tw *tabwriter.Writer, streams []ops.StreamStatus) {
	section(w, tw, "BUFFER", "STREAM\tMESSAGES\tBYTES\tFILL\tCONSUMER\tPENDING\tACK-PENDING\tOLDEST UNDELIVERED")
	for _, s := range streams {
		head := fmt.Sprintf("%s\t%d\t%s\t%.1f%%", s.Name, s.Messages, humanBytes(int64(s.Bytes)), s.FillPercent)
		if len(s.Consumers) == 0 {
			fmt.Fprintf(tw, "%s\t\t\t\t\n", head)
		}
		for i, c := range s.Consumers {
			if i > 0 {
				head = "\t\t\t"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", head, c.Name, c.Pending, c.AckPending, seconds(c.OldestUndeliveredSeconds))
		}
	}
}

func printSinks(w io.Writer, tw *tabwriter.Writer, sinks []ops.SinkStatus) {
	section(w, tw, "SINKS", "NAME\tTYPE\tSTATE\tEV/S\tMB/S\tEVENTS\tRETRIES\tDLQ\tOLDEST UNDELIVERED\tWHY")
	for _, s := range sinks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.2f\t%.0f\t%.0f\t%.0f\t%s\t%s\n", s.Name, s.Type, s.State, s.EventsPerSecond, s.BytesPerSecond/1e6,
			s.Events, s.Retries, s.DLQ, seconds(s.OldestUndeliveredSeconds), s.Reason)
	}
}

func printPolicies(w io.Writer, p *rego.Status) {
	fmt.Fprintln(w, "\nPOLICIES")
	switch {
	case p == nil:
		fmt.Fprintln(w, "  none configured")
		return
	case p.LastError != "":
		fmt.Fprintf(w, "  version %s (loaded %s); LAST RELOAD FAILED, the old set runs: %s\n", p.Version, p.LoadedAt.Format(time.RFC3339), p.LastError)
	default:
		fmt.Fprintf(w, "  version %s (loaded %s), %d schemas: %s\n", p.Version, p.LoadedAt.Format(time.RFC3339), len(p.Schemas), strings.Join(p.Schemas, ", "))
	}
	for _, name := range p.Schemas {
		if why := p.FastPath[name]; why != "" && why != "plan" {
			fmt.Fprintf(w, "  schema %s runs through OPA's evaluator: %s\n", name, why)
		}
	}
}

// printCluster says who leads, which peers are down, whether this node is
// paused, and how current each stream's replicas are.
func printCluster(w io.Writer, c *ops.ClusterStatus, streams []ops.StreamStatus) {
	leader := c.MetaLeader
	if leader == "" {
		leader = "NONE (no quorum: nothing can be stored)"
	}
	var peers []string
	for _, p := range c.Peers {
		state := "up"
		if !p.RouteUp {
			state = "DOWN"
			if !p.LastSeen.IsZero() {
				state += ", last seen " + time.Since(p.LastSeen).Round(time.Second).String() + " ago"
			}
		}
		peers = append(peers, p.Name+" ("+state+")")
	}
	fmt.Fprintf(w, "\nCLUSTER %s, this node %s: meta leader %s; peers %s\n", c.Name, c.Self, leader, strings.Join(peers, ", "))
	if q := c.Quorum; q != nil && q.Paused {
		fmt.Fprintf(w, "  PAUSED for %s (sources and sinks take no work; the other nodes have it): %s\n", time.Since(q.Since).Round(time.Second), q.Reason)
	}
	for _, s := range streams {
		var reps []string
		for _, r := range s.Replicas {
			state := "current"
			switch {
			case r.Offline:
				state = "OFFLINE"
			case !r.Current:
				state = fmt.Sprintf("behind by %d", r.Lag)
			}
			reps = append(reps, r.Name+" "+state)
		}
		fmt.Fprintf(w, "  %s: leader %s; replicas: %s\n", s.Name, s.Leader, strings.Join(reps, ", "))
	}
}
