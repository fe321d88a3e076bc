package cmd

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/node/ops"
)

// printStatus writes the one-screen status as aligned plain text.
func printStatus(w io.Writer, st *ops.Status) {
	fmt.Fprintf(w, "node %s   %s\n", st.Node, st.Time.Format(time.RFC3339))
	for _, s := range st.Insecure {
		fmt.Fprintf(w, "INSECURE %s: %s is true (sluice validate says what it exposes)\n", s.What, s.Setting)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	section := func(title, header string) {
		tw.Flush()
		fmt.Fprintf(w, "\n%s\n", title)
		fmt.Fprintln(tw, header)
	}

	section("SOURCES", "NAME\tTYPE\tPART\tCHECKPOINT\tLAG\tREC/S\tMB/S\tRECORDS\tERRORS")
	for _, s := range st.Sources {
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

	section("BUFFER", "STREAM\tMESSAGES\tBYTES\tFILL\tCONSUMER\tPENDING\tACK-PENDING\tOLDEST UNDELIVERED")
	for _, s := range st.Streams {
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

	section("SINKS", "NAME\tTYPE\tSTATE\tEV/S\tMB/S\tEVENTS\tRETRIES\tDLQ\tOLDEST UNDELIVERED\tWHY")
	for _, s := range st.Sinks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.2f\t%.0f\t%.0f\t%.0f\t%s\t%s\n", s.Name, s.Type, s.State, s.EventsPerSecond, s.BytesPerSecond/1e6,
			s.Events, s.Retries, s.DLQ, seconds(s.OldestUndeliveredSeconds), s.Reason)
	}
	tw.Flush()

	if len(st.Orphans) > 0 {
		fmt.Fprintln(w, "\nBACKLOGS OF NO CONFIGURED SINK OR SOURCE (nothing delivers them; they take buffer space)")
		printOrphans(w, st.Orphans)
	}

	fmt.Fprintln(w, "\nPOLICIES")
	switch p := st.Policies; {
	case p == nil:
		fmt.Fprintln(w, "  none configured")
	case p.LastError != "":
		fmt.Fprintf(w, "  version %s (loaded %s); LAST RELOAD FAILED, the old set runs: %s\n", p.Version, p.LoadedAt.Format(time.RFC3339), p.LastError)
	default:
		fmt.Fprintf(w, "  version %s (loaded %s), %d schemas: %s\n", p.Version, p.LoadedAt.Format(time.RFC3339), len(p.Schemas), strings.Join(p.Schemas, ", "))
	}
	if p := st.Policies; p != nil {
		for _, name := range p.Schemas {
			if why := p.FastPath[name]; why != "" && why != "plan" {
				fmt.Fprintf(w, "  schema %s runs through OPA's evaluator: %s\n", name, why)
			}
		}
	}

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
	if c := st.Cluster; c != nil {
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
		for _, s := range st.Streams {
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
	for _, e := range st.Errors {
		fmt.Fprintf(w, "\n(could not read %s)\n", e)
	}
}

func printOrphans(w io.Writer, orphans []ops.Orphan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STREAM\tSUBJECT\tCONSUMER\tUNDELIVERED\tOLDEST\tFIX")
	for _, o := range orphans {
		oldest := "-"
		if !o.Oldest.IsZero() {
			oldest = o.Oldest.UTC().Format(time.RFC3339)
		}
		consumer := o.Consumer
		if consumer == "" {
			consumer = "(none)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", o.Stream, o.Subject, consumer, o.Messages, oldest, o.Fix)
	}
	tw.Flush()
}

func printDLQ(w io.Writer, groups []ops.DLQGroup) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tNAME\tCOUNT\tNEWEST\tEXAMPLE ID\tREASON")
	for _, g := range groups {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", g.Stage, g.Name, g.Count, g.Newest.Format(time.RFC3339), g.Example, g.Reason)
	}
	tw.Flush()
}

func printJobs(w io.Writer, jobs []ops.JobStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATE\tRECORDS\tBYTES\tSTARTED\tNOTE")
	for _, j := range jobs {
		note := j.Note
		if j.Error != "" {
			note = j.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", j.ID, j.Kind, j.State, j.Done.Records, j.Total.Records, humanBytes(j.Done.Bytes),
			j.Started.Format(time.RFC3339), note)
	}
	tw.Flush()
}

func seconds(s float64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
