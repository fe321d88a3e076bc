package cmd

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/actors/fetch/gcs/gcstest"
)

func newEmulateGCSCmd() *cobra.Command {
	var o gcstest.Options
	var objects, perObject int
	cmd := &cobra.Command{
		Use:   "gcs",
		Short: "Run Google Cloud Storage and Pub/Sub stand-ins that announce each upload as a bucket notification",
		RunE: func(cmd *cobra.Command, args []string) error {
			return emulateGCS(cmd.OutOrStdout(), o, objects, perObject)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:4443", "GCS (HTTP) address")
	f.StringVar(&o.PubSubListen, "pubsub-listen", "127.0.0.1:8085", "Pub/Sub (gRPC) address")
	f.StringVar(&o.Project, "project", "sluice-dev", "project")
	f.StringVar(&o.Bucket, "bucket", "github-audit-logs", "bucket")
	f.StringVar(&o.Topic, "topic", "gcs-notifications", "notification topic")
	f.StringVar(&o.Subscription, "subscription", "sluice", "pull subscription on the topic")
	f.IntVar(&objects, "objects", 10, "gzip'd JSON-lines objects of sample GitHub audit logs to preload")
	f.IntVar(&perObject, "records-per-object", 1000, "records per preloaded object (about 1 KB each)")
	return cmd
}

// emulateGCS runs the stand-ins, preloaded, until interrupted.
func emulateGCS(out io.Writer, o gcstest.Options, objects, perObject int) error {
	s, err := gcstest.Start(o)
	if err != nil {
		return err
	}
	defer s.Close()
	n, err := s.Preload(context.Background(), objects, perObject)
	if err != nil {
		return err
	}
	o = s.Options()
	fmt.Fprintf(out, "GCS stand-in at %s, Pub/Sub stand-in at %s: bucket %s, topic %s, pull subscription %s (project %s)\n",
		s.StorageHost(), s.PubSubHost(), o.Bucket, o.Topic, o.Subscription, o.Project)
	fmt.Fprintf(out, "%d objects (%d records) preloaded and announced; uploads with the storage client are announced too\n", objects, n)
	fmt.Fprintf(out, "export STORAGE_EMULATOR_HOST=%s\nexport PUBSUB_EMULATOR_HOST=%s\n", s.StorageHost(), s.PubSubHost())
	ctx, stop := signalContext()
	defer stop()
	<-ctx.Done()
	return nil
}
