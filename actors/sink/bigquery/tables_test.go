package bigquery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/sluicehq/sluice/actors/sink/bigquery/bqtest"
)

func newTables(t *testing.T) (*tables, *bqtest.Server) {
	t.Helper()
	s, err := bqtest.NewServer(bqtest.Options{Project: "proj"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c, err := bigquery.NewClient(context.Background(), "proj", option.WithEndpoint(s.URL+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tables{client: c, create: true, partition: "day", partitionField: "timestamp"}, s
}

func TestEnsureCreatesThenWidens(t *testing.T) {
	tb, s := newTables(t)
	ctx := context.Background()
	row := bigquery.Schema{{Name: "timestamp", Type: bigquery.TimestampFieldType}, {Name: "actor", Type: bigquery.StringFieldType}, {Name: "id", Type: bigquery.StringFieldType}}
	got, err := tb.ensure(ctx, "github", "audit", row, "")
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "actor:STRING,id:STRING,timestamp:TIMESTAMP" {
		t.Fatalf("created with %s", names(got))
	}
	md, err := tb.client.Dataset("github").Table("audit").Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.TimePartitioning == nil || md.TimePartitioning.Field != "timestamp" || md.TimePartitioning.Type != bigquery.DayPartitioningType {
		t.Fatalf("partitioning: %+v", md.TimePartitioning)
	}
	got, err = tb.ensure(ctx, "github", "audit", append(row, &bigquery.FieldSchema{Name: "repo", Type: bigquery.StringFieldType}), "")
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "actor:STRING,id:STRING,timestamp:TIMESTAMP,repo:STRING" || len(s.Schema("proj", "github", "audit").Fields) != 4 {
		t.Fatalf("widened to %s", names(got))
	}
	_, err = tb.ensure(ctx, "github", "audit", bigquery.Schema{{Name: "actor", Type: bigquery.IntegerFieldType}}, "")
	var c *Conflict
	if !errors.As(err, &c) || c.Path != "actor" {
		t.Fatalf("type clash: %v", err)
	}
	s.DeleteTable("proj", "github", "audit")
	if _, err := tb.ensure(ctx, "github", "audit", row, "hour"); err != nil {
		t.Fatalf("re-creating a deleted table: %v", err)
	}
	tb.create = false
	if _, err := tb.ensure(ctx, "github", "other", row, ""); err == nil {
		t.Fatal("created a table with create_tables off")
	}
}

// Eight writers each add a column at once: with the etag, none is lost.
func TestConcurrentWideningLosesNoColumn(t *testing.T) {
	tb, s := newTables(t)
	ctx := context.Background()
	base := bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}}
	if _, err := tb.ensure(ctx, "d", "t", base, ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := tb.ensure(ctx, "d", "t", append(base, &bigquery.FieldSchema{Name: fmt.Sprint("c", i), Type: bigquery.StringFieldType}), "")
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.Schema("proj", "d", "t").Fields); n != 9 {
		t.Fatalf("%d columns after 8 concurrent widenings, want 9", n)
	}
}
