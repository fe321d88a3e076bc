package bigquery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/sluicehq/sluice/actors"
	"github.com/sluicehq/sluice/internal/backoff"
)

// tables creates and widens tables over the REST API.
type tables struct {
	client         *bigquery.Client
	create         bool
	location       string
	partition      string                      // default partitioning: hour, day, month, year or "" for none
	partitionField string                      // the TIMESTAMP column it partitions on
	widened        func(dataset, table string) // told of each schema update, if set
}

// ensure makes the table hold every column of row and returns its schema.
// A missing table (and dataset) is created when create_tables is on; a
// grown schema is written with the etag read, so two nodes widening at
// once cannot undo each other (412 → read again and merge again).
func (t *tables) ensure(ctx context.Context, dataset, table string, row bigquery.Schema, partition string) (bigquery.Schema, error) {
	tb := t.client.Dataset(dataset).Table(table)
	// Another writer changed the table under us (409, 412, 404): read it
	// again after a short wait, so that writers racing on one table do
	// not retry in lockstep.
	bo := backoff.New(10*time.Millisecond, time.Second)
	for attempt := 0; attempt < 20; attempt++ {
		if attempt > 0 && !actors.Sleep(ctx, bo.Next()) {
			return nil, ctx.Err()
		}
		md, err := tb.Metadata(ctx)
		if httpCode(err) == http.StatusNotFound {
			if !t.create {
				return nil, fmt.Errorf("table %s.%s does not exist and create_tables is off", dataset, table)
			}
			schema, _, werr := Widen(nil, row)
			if werr != nil {
				return nil, werr
			}
			err := t.createTable(ctx, dataset, table, schema, partition)
			if httpCode(err) == http.StatusConflict {
				continue // another node made it: read it and merge
			}
			if err != nil {
				return nil, fmt.Errorf("create table %s.%s: %w", dataset, table, err)
			}
			return schema, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read table %s.%s: %w", dataset, table, err)
		}
		widened, grown, err := Widen(md.Schema, row)
		if err != nil || !grown {
			return md.Schema, err
		}
		_, err = tb.Update(ctx, bigquery.TableMetadataToUpdate{Schema: widened}, md.ETag)
		switch httpCode(err) {
		case 0:
			if t.widened != nil {
				t.widened(dataset, table)
			}
			return widened, nil
		case http.StatusPreconditionFailed, http.StatusNotFound:
			continue // changed or deleted since it was read
		}
		return nil, fmt.Errorf("widen table %s.%s: %w", dataset, table, err)
	}
	return nil, fmt.Errorf("table %s.%s: its schema kept changing under us", dataset, table)
}

func (t *tables) createTable(ctx context.Context, dataset, table string, schema bigquery.Schema, partition string) error {
	ds := t.client.Dataset(dataset)
	md := &bigquery.TableMetadata{Schema: schema}
	if partition == "" {
		partition = t.partition
	}
	if partition != "" {
		md.TimePartitioning = &bigquery.TimePartitioning{Type: bigquery.TimePartitioningType(strings.ToUpper(partition)), Field: t.partitionField}
	}
	err := ds.Table(table).Create(ctx, md)
	if httpCode(err) != http.StatusNotFound {
		return err
	}
	// No dataset yet: make it, then the table.
	if err := ds.Create(ctx, &bigquery.DatasetMetadata{Location: t.location}); err != nil && httpCode(err) != http.StatusConflict {
		return fmt.Errorf("create dataset %s: %w", dataset, err)
	}
	return ds.Table(table).Create(ctx, md)
}

func httpCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

// permanent says whether BigQuery's REST answer is one that no retry will
// change: 400 (invalid), its answer to a schema it will never take.
func permanent(err error) bool { return httpCode(err) == http.StatusBadRequest }
