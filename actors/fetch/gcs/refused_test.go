package gcs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/googleapi"

	"github.com/sluicehq/sluice/actors/fetch/gcs/gcstest"
	"github.com/sluicehq/sluice/queue"
	"github.com/sluicehq/sluice/queue/batch"
)

// Answers that retrying will not change — no objectViewer on one of the
// buckets sharing the topic, a requester-pays bucket, an object under a
// customer-supplied key, a bucket that is gone — send the notification to
// the DLQ with the reason (re-drivable once fixed) instead of nacking it
// forever; they hold no in-flight slot and do not slow the healthy
// objects of another bucket. The real storage client reads the refusals
// from a front on fake-gcs-server that words them as GCS does.
func TestPermanentGCSRefusalsGoToTheDLQAndHealthyObjectsFlow(t *testing.T) {
	fx := newFixture(t, t.TempDir(), 256<<20, func(c *Config) { c.MaxObjectsInFlight = 2 })
	ctx := context.Background()
	refusals := map[string]gcstest.Refusal{"forbidden-logs": gcstest.Forbidden, "payer-logs": gcstest.RequesterPays, "csek-logs": gcstest.CustomerKey}
	for bucket, r := range refusals {
		fx.gs.CreateBucket(bucket)
		for _, name := range []string{"github/a.jsonl", "github/b.jsonl"} {
			lines, _ := jsonLines(0, 10)
			if _, err := fx.gs.UploadTo(ctx, bucket, name, lines, ""); err != nil {
				t.Fatal(err)
			}
		}
		fx.gs.Refuse(bucket, r)
	}
	if err := fx.gs.NotifyIn(ctx, "gone-logs", "github/gone.jsonl", 1, "OBJECT_FINALIZE"); err != nil {
		t.Fatal(err)
	}
	fx.start()
	// Long enough for refusals nacked with the shared backoff to pile up.
	time.Sleep(3 * time.Second)
	const objects, perObject = 20, 50
	start := time.Now()
	for i := 0; i < objects; i++ {
		lines, _ := jsonLines(i*perObject, perObject)
		upload(t, fx.gs, fmt.Sprintf("github/healthy-%02d.jsonl", i), lines, "")
	}
	fx.waitRecords(objects*perObject, 5*time.Second)
	t.Logf("%d healthy objects uploaded and read in %s beside %d refused", objects, time.Since(start), 2*len(refusals)+1)
	fx.waitNotifications("refused", float64(2*len(refusals)+1))
	if n := fx.notifications("nacked"); n != 0 {
		t.Fatalf("%v notifications nacked\nlog:\n%s", n, fx.log.String())
	}
	var reasons []string
	for _, m := range fx.dlq() {
		if !strings.HasSuffix(m.Header.Get(batch.HeaderRecordID), "/notification") || m.Header.Get(batch.HeaderOrigin) != RedriveSubject("github") {
			t.Fatalf("DLQ entry %s, origin %s: not a re-drivable notification", m.Header.Get(batch.HeaderRecordID), m.Header.Get(batch.HeaderOrigin))
		}
		reasons = append(reasons, m.Header.Get(batch.HeaderReason))
	}
	all := strings.Join(reasons, "\n")
	for _, want := range []string{"403 AccessDenied", "roles/storage.objectViewer", "400 UserProjectMissing", "requester-pays",
		"400 ResourceIsEncryptedWithCustomerEncryptionKey", "customer-supplied", "bucket gone-logs does not exist"} {
		if !strings.Contains(all, want) {
			t.Fatalf("no DLQ reason says %q:\n%s", want, all)
		}
	}
	if len(reasons) != 2*len(refusals)+1 {
		t.Fatalf("DLQ holds %d entries, want %d:\n%s", len(reasons), 2*len(refusals)+1, all)
	}
}

// Only answers that retrying cannot change are refusals; the rest are
// nacked and read again.
func TestOnlyPermanentAnswersAreRefusals(t *testing.T) {
	for _, tc := range []struct {
		err     error
		refused bool
	}{
		{&googleapi.Error{Code: 403, Body: "<Error><Code>AccessDenied</Code></Error>"}, true},
		{&googleapi.Error{Code: 400, Errors: []googleapi.ErrorItem{{Reason: "required"}}, Message: "Bucket is a requester pays bucket but no user project provided."}, true},
		{fmt.Errorf("open: %w", &googleapi.Error{Code: 404}), true},
		{errNoBucket, true},
		{&googleapi.Error{Code: 401}, false},
		{&googleapi.Error{Code: 408}, false},
		{&googleapi.Error{Code: 429}, false},
		{&googleapi.Error{Code: 500}, false},
		{&googleapi.Error{Code: 503}, false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{context.DeadlineExceeded, false},
		{queue.ErrBufferFull, false},
	} {
		if why, ok := refusal("b", tc.err); ok != tc.refused {
			t.Errorf("%v: refused %v (%q), want %v", tc.err, ok, why, tc.refused)
		}
	}
}
