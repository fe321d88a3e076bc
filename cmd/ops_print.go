package cmd

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/node/ops"
)

// The tables and units the operations commands print.

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
