package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/actors/fetch/sls/slstest"
)

func newEmulateSLSCmd() *cobra.Command {
	var o slstest.Options
	var records int
	var seed uint64
	var rate float64
	var rateFor time.Duration
	cmd := &cobra.Command{
		Use:   "sls",
		Short: "Run an Alibaba Cloud Log Service stand-in, preloaded with sample audit logs",
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.AccessKeyID == "" {
				o.AccessKeyID = os.Getenv("SLS_AK_ID")
			}
			if o.AccessKeySecret == "" {
				o.AccessKeySecret = os.Getenv("SLS_AK_KEY")
			}
			if o.AccessKeyID == "" || o.AccessKeySecret == "" {
				return errors.New("--access-key-id and --access-key-secret (or SLS_AK_ID and SLS_AK_KEY) are required")
			}
			s, err := slstest.NewServer(o)
			if err != nil {
				return err
			}
			defer s.Close()
			s.Preload(seed, records, devEpoch)
			fmt.Fprintf(cmd.OutOrStdout(), "SLS stand-in at %s: project %s, logstore %s, %d shards, %d logs preloaded; PutLogs accepted\n",
				s.Endpoint, o.Project, o.Logstore, o.Shards, s.Logs())
			ctx, stop := signalContext()
			defer stop()
			if rate > 0 {
				go appendAtRate(ctx, s, seed+1_000_000, rate, rateFor)
			}
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "listen", "127.0.0.1:9080", "address to listen on")
	f.StringVar(&o.Project, "project", "dev", "project name")
	f.StringVar(&o.Logstore, "logstore", "audit", "logstore name")
	f.IntVar(&o.Shards, "shards", 4, "shards")
	f.IntVar(&records, "records", 20000, "sample audit logs to preload (about 1 KB each)")
	f.Uint64Var(&seed, "seed", 1, "seed of the sample logs")
	f.StringVar(&o.AccessKeyID, "access-key-id", "", "access key id to accept (default $SLS_AK_ID)")
	f.StringVar(&o.AccessKeySecret, "access-key-secret", "", "access key secret to accept (default $SLS_AK_KEY)")
	f.StringVar(&o.StateFile, "state", "", "file keeping consumer groups and checkpoints across restarts")
	f.Float64Var(&rate, "rate", 0, "after preloading, keep appending sample logs at this many MB/s")
	f.DurationVar(&rateFor, "rate-for", time.Minute, "how long --rate goes on")
	f.DurationVar(&o.TrimConsumed, "trim-consumed", 0, "drop log groups every consumer group has checkpointed past, this often (keeps memory flat under --rate)")
	return cmd
}

// appendAtRate writes one log group of sample logs at a time, paced to
// mbps, round robin over the shards, until d has passed.
func appendAtRate(ctx context.Context, s *slstest.Server, seed uint64, mbps float64, d time.Duration) {
	start := time.Now()
	sent := 0.0
	for i := 0; time.Since(start) < d && ctx.Err() == nil; i++ {
		lg := slstest.AuditLogGroups(seed+uint64(i), slstest.GroupSize, time.Now())[0]
		s.Put(i, lg)
		sent += float64(slstest.GroupSize) * 1000 / 1e6
		if ahead := time.Duration(sent/mbps*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
}
