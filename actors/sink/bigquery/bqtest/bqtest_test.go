package bqtest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

const project = "proj"

func clients(t *testing.T, s *Server) (*bigquery.Client, *managedwriter.Client) {
	t.Helper()
	ctx := context.Background()
	bqc, err := bigquery.NewClient(ctx, project, option.WithEndpoint(s.URL+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bqc.Close() })
	mwc, err := managedwriter.NewClient(ctx, project, option.WithEndpoint(s.GRPCAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mwc.Close() })
	return bqc, mwc
}

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Project = project
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// descriptor is what a writer sends for a schema: adapt's conversion,
// normalized, and the message type to encode rows with.
func descriptor(t *testing.T, schema bigquery.Schema) (*descriptorpb.DescriptorProto, protoreflect.MessageDescriptor) {
	t.Helper()
	ss, err := adapt.BQSchemaToStorageTableSchema(schema)
	if err != nil {
		t.Fatal(err)
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ss, "root")
	if err != nil {
		t.Fatal(err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		t.Fatalf("descriptor is a %T", d)
	}
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		t.Fatal(err)
	}
	return dp, md
}

func encode(t *testing.T, md protoreflect.MessageDescriptor, values map[string]any) []byte {
	t.Helper()
	m := dynamicpb.NewMessage(md)
	for k, v := range values {
		f := md.Fields().ByName(protoreflect.Name(k))
		if f == nil {
			t.Fatalf("no field %s", k)
		}
		m.Set(f, protoreflect.ValueOf(v))
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func createTable(t *testing.T, bqc *bigquery.Client, table string, schema bigquery.Schema) *bigquery.Table {
	t.Helper()
	ctx := context.Background()
	ds := bqc.Dataset("logs")
	if _, err := ds.Metadata(ctx); err != nil {
		if err := ds.Create(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	tb := ds.Table(table)
	if err := tb.Create(ctx, &bigquery.TableMetadata{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	return tb
}

func httpStatus(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

// The bigquery package's table calls: create, conflict, widen with the
// etag, stale etag, a type change, delete, not found.
func TestTablesThroughTheRealClient(t *testing.T) {
	s := newServer(t, Options{})
	bqc, _ := clients(t, s)
	ctx := context.Background()
	tb := createTable(t, bqc, "audit", bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}, {Name: "ts", Type: bigquery.TimestampFieldType}})
	if err := tb.Create(ctx, &bigquery.TableMetadata{}); httpStatus(err) != http.StatusConflict {
		t.Fatalf("creating it again: %v, want 409", err)
	}
	md, err := tb.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wider := append(md.Schema, &bigquery.FieldSchema{Name: "n", Type: bigquery.IntegerFieldType})
	md2, err := tb.Update(ctx, bigquery.TableMetadataToUpdate{Schema: wider}, md.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if len(md2.Schema) != 3 || md2.Schema[2].Name != "n" || md2.ETag == md.ETag {
		t.Fatalf("after widening: %d columns, etag %q → %q", len(md2.Schema), md.ETag, md2.ETag)
	}
	if _, err := tb.Update(ctx, bigquery.TableMetadataToUpdate{Schema: append(wider, &bigquery.FieldSchema{Name: "x", Type: bigquery.StringFieldType})}, md.ETag); httpStatus(err) != http.StatusPreconditionFailed {
		t.Fatalf("update with a stale etag: %v, want 412", err)
	}
	changed := bigquery.Schema{{Name: "id", Type: bigquery.IntegerFieldType}, md2.Schema[1], md2.Schema[2]}
	if _, err := tb.Update(ctx, bigquery.TableMetadataToUpdate{Schema: changed}, md2.ETag); httpStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "changed type") {
		t.Fatalf("changing a column's type: %v, want 400", err)
	}
	if err := tb.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Metadata(ctx); httpStatus(err) != http.StatusNotFound {
		t.Fatalf("after delete: %v, want 404", err)
	}
}

// Rows appended through managedwriter's _default stream land in the table
// with their types, and read back through the bigquery package.
func TestDefaultStreamAppendsAndReadsBack(t *testing.T) {
	s := newServer(t, Options{})
	bqc, mwc := clients(t, s)
	ctx := context.Background()
	schema := bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}, {Name: "ts", Type: bigquery.TimestampFieldType},
		{Name: "n", Type: bigquery.FloatFieldType}, {Name: "tags", Type: bigquery.StringFieldType, Repeated: true}}
	tb := createTable(t, bqc, "audit", schema)
	dp, md := descriptor(t, schema)
	ms, err := mwc.NewManagedStream(ctx, managedwriter.WithDestinationTable(managedwriter.TableParentFromParts(project, "logs", "audit")),
		managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(dp))
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	ts := time.Date(2026, 11, 30, 10, 0, 0, 123456000, time.UTC)
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("id"), protoreflect.ValueOfString("a"))
	m.Set(md.Fields().ByName("ts"), protoreflect.ValueOfInt64(ts.UnixMicro()))
	m.Set(md.Fields().ByName("n"), protoreflect.ValueOfFloat64(1.5))
	l := m.Mutable(md.Fields().ByName("tags")).List()
	l.Append(protoreflect.ValueOfString("x"))
	l.Append(protoreflect.ValueOfString("y"))
	row1, _ := proto.Marshal(m)
	row2 := encode(t, md, map[string]any{"id": "b"})
	res, err := ms.AppendRows(ctx, [][]byte{row1, row2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.GetResult(ctx); err != nil {
		t.Fatal(err)
	}
	rows := s.Rows(project, "logs", "audit")
	if len(rows) != 2 || rows[0]["id"] != "a" || !rows[0]["ts"].(time.Time).Equal(ts) || rows[0]["n"] != 1.5 || rows[1]["id"] != "b" {
		t.Fatalf("rows: %v", rows)
	}
	it := tb.Read(ctx)
	var got [][]bigquery.Value
	for {
		var v []bigquery.Value
		err := it.Next(&v)
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if len(got) != 2 || got[0][0] != "a" || !got[0][1].(time.Time).Equal(ts) || got[0][2] != 1.5 || len(got[0][3].([]bigquery.Value)) != 2 || got[1][1] != nil {
		t.Fatalf("read back: %v", got)
	}
}

// A widened table reaches the write API only after the propagation delay:
// until then the new field is refused with SCHEMA_MISMATCH_EXTRA_FIELDS,
// rows of the old shape go on, and then an append result carries the
// updated schema.
func TestWideningPropagatesLate(t *testing.T) {
	s := newServer(t, Options{Propagation: 500 * time.Millisecond})
	bqc, mwc := clients(t, s)
	ctx := context.Background()
	narrow := bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}}
	wide := bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}, {Name: "extra", Type: bigquery.StringFieldType}}
	tb := createTable(t, bqc, "audit", narrow)
	dpNarrow, mdNarrow := descriptor(t, narrow)
	dpWide, mdWide := descriptor(t, wide)
	open := func(dp *descriptorpb.DescriptorProto) *managedwriter.ManagedStream {
		ms, err := mwc.NewManagedStream(ctx, managedwriter.WithDestinationTable(managedwriter.TableParentFromParts(project, "logs", "audit")),
			managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(dp))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		return ms
	}
	append1 := func(ms *managedwriter.ManagedStream, row []byte) (*managedwriter.AppendResult, error) {
		res, err := ms.AppendRows(ctx, [][]byte{row})
		if err != nil {
			return nil, err
		}
		_, err = res.GetResult(ctx)
		return res, err
	}
	wideStream := open(dpWide)
	_, err := append1(wideStream, encode(t, mdWide, map[string]any{"id": "1", "extra": "e"}))
	if code := storageCode(err); code != storagepb.StorageError_SCHEMA_MISMATCH_EXTRA_FIELDS {
		t.Fatalf("an extra field before widening: %v (storage error %v)", err, code)
	}
	md, _ := tb.Metadata(ctx)
	if _, err := tb.Update(ctx, bigquery.TableMetadataToUpdate{Schema: wide}, md.ETag); err != nil {
		t.Fatal(err)
	}
	narrowStream := open(dpNarrow)
	res, err := append1(narrowStream, encode(t, mdNarrow, map[string]any{"id": "2"}))
	if err != nil {
		t.Fatalf("old-shape row while the new schema propagates: %v", err)
	}
	if us, _ := res.UpdatedSchema(ctx); us != nil {
		t.Fatalf("updated schema before propagation: %v", us)
	}
	if _, err := append1(wideStream, encode(t, mdWide, map[string]any{"id": "3", "extra": "e"})); storageCode(err) != storagepb.StorageError_SCHEMA_MISMATCH_EXTRA_FIELDS {
		t.Fatalf("new field before propagation: %v", err)
	}
	time.Sleep(600 * time.Millisecond)
	res, err = append1(narrowStream, encode(t, mdNarrow, map[string]any{"id": "4"}))
	if err != nil {
		t.Fatal(err)
	}
	us, _ := res.UpdatedSchema(ctx)
	if us == nil || len(us.GetFields()) != 2 || us.GetFields()[1].GetName() != "extra" {
		t.Fatalf("after propagation the result's updated schema is %v", us)
	}
	if _, err := append1(wideStream, encode(t, mdWide, map[string]any{"id": "5", "extra": "e"})); err != nil {
		t.Fatalf("new field after propagation: %v", err)
	}
	var ids []string
	for _, r := range s.Rows(project, "logs", "audit") {
		ids = append(ids, r["id"].(string))
	}
	if strings.Join(ids, ",") != "2,4,5" {
		t.Fatalf("rows in the table: %v, want 2,4,5", ids)
	}
}

func storageCode(err error) storagepb.StorageError_StorageErrorCode {
	ae, ok := apierror.FromError(err)
	if !ok {
		return -1
	}
	for _, d := range ae.Details().Unknown {
		if se, ok := d.(*storagepb.StorageError); ok {
			return se.GetCode()
		}
	}
	return -1
}

// Per-row errors fail the whole request and name the rows; an unavailable
// frontend is retried by the client (EnableWriteRetries); a deleted table
// is TABLE_NOT_FOUND.
func TestRowErrorsUnavailableAndDeletedTable(t *testing.T) {
	s := newServer(t, Options{})
	bqc, mwc := clients(t, s)
	ctx := context.Background()
	schema := bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}}
	createTable(t, bqc, "audit", schema)
	dp, md := descriptor(t, schema)
	ms, err := mwc.NewManagedStream(ctx, managedwriter.WithDestinationTable(managedwriter.TableParentFromParts(project, "logs", "audit")),
		managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(dp), managedwriter.EnableWriteRetries(true))
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	s.RowErrors(func(_ string, row map[string]any) string {
		if row["id"] == "bad" {
			return "field id: refused"
		}
		return ""
	})
	res, err := ms.AppendRows(ctx, [][]byte{encode(t, md, map[string]any{"id": "ok"}), encode(t, md, map[string]any{"id": "bad"})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.GetResult(ctx); err == nil {
		t.Fatal("a request with a bad row succeeded")
	}
	full, _ := res.FullResponse(ctx)
	if len(full.GetRowErrors()) != 1 || full.GetRowErrors()[0].GetIndex() != 1 {
		t.Fatalf("row errors: %v", full.GetRowErrors())
	}
	if n := len(s.Rows(project, "logs", "audit")); n != 0 {
		t.Fatalf("%d rows of the failed request landed", n)
	}
	s.RowErrors(nil)
	s.Unavailable(1)
	res, err = ms.AppendRows(ctx, [][]byte{encode(t, md, map[string]any{"id": "after-unavailable"})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.GetResult(ctx); err != nil {
		t.Fatalf("with write retries, an unavailable frontend: %v", err)
	}
	if rows := s.Rows(project, "logs", "audit"); len(rows) != 1 || rows[0]["id"] != "after-unavailable" {
		t.Fatalf("rows: %v", rows)
	}
	s.DeleteTable(project, "logs", "audit")
	res, err = ms.AppendRows(ctx, [][]byte{encode(t, md, map[string]any{"id": "x"})})
	if err == nil {
		_, err = res.GetResult(ctx)
	}
	if code := storageCode(err); code != storagepb.StorageError_TABLE_NOT_FOUND {
		t.Fatalf("append to a deleted table: %v (storage error %v)", err, code)
	}
}

// What BigQuery refuses in a schema, on create and on widening, with its
// 400 "invalid": a reserved name prefix (any case, at any depth), more than
// 10,000 columns, records nested deeper than 15 levels.
func TestSchemasBigQueryRefuses(t *testing.T) {
	s := newServer(t, Options{})
	bqc, _ := clients(t, s)
	ctx := context.Background()
	tb := createTable(t, bqc, "ok", bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}})
	md, err := tb.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	many := make(bigquery.Schema, 10001)
	for i := range many {
		many[i] = &bigquery.FieldSchema{Name: "c" + strconv.Itoa(i), Type: bigquery.StringFieldType}
	}
	deep := &bigquery.FieldSchema{Name: "leaf", Type: bigquery.StringFieldType}
	for i := 0; i < 16; i++ { // 16 RECORD levels above the leaf
		deep = &bigquery.FieldSchema{Name: "r" + strconv.Itoa(i), Type: bigquery.RecordFieldType, Schema: bigquery.Schema{deep}}
	}
	for name, c := range map[string]struct {
		schema bigquery.Schema
		want   string
	}{
		"reserved":        {bigquery.Schema{{Name: "_PARTITIONTIME", Type: bigquery.TimestampFieldType}}, `Invalid field name "_PARTITIONTIME"`},
		"reserved_lower":  {bigquery.Schema{{Name: "_file_name", Type: bigquery.StringFieldType}}, "(case-insensitive) prefixes _PARTITION, _TABLE_, _FILE_, _ROW_TIMESTAMP, __ROOT__ and _COLIDENTIFIER"},
		"reserved_nested": {bigquery.Schema{{Name: "m", Type: bigquery.RecordFieldType, Schema: bigquery.Schema{{Name: "__root__x", Type: bigquery.StringFieldType}}}}, `Invalid field name "__root__x"`},
		"colidentifier":   {bigquery.Schema{{Name: "_COLIDENTIFIER_1", Type: bigquery.StringFieldType}}, "Invalid field name"},
		"columns":         {many, "10000"},
		"depth":           {bigquery.Schema{deep}, "15"},
	} {
		err := bqc.Dataset("logs").Table(name).Create(ctx, &bigquery.TableMetadata{Schema: c.schema})
		if httpStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("create %s: %v, want 400 invalid with %q", name, err, c.want)
		}
		_, err = tb.Update(ctx, bigquery.TableMetadataToUpdate{Schema: append(md.Schema[:1:1], c.schema...)}, md.ETag)
		if httpStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), c.want) {
			t.Errorf("widen with %s: %v, want 400 with %q", name, err, c.want)
		}
	}
	if tables := s.Tables(project); len(tables) != 1 {
		t.Fatalf("tables: %v, want only logs.ok", tables)
	}
	if _, err := tb.Update(ctx, bigquery.TableMetadataToUpdate{Schema: append(md.Schema[:1:1], &bigquery.FieldSchema{Name: "partition_x", Type: bigquery.StringFieldType})}, md.ETag); err != nil {
		t.Fatalf("a name that only contains a reserved word: %v", err)
	}
}

// Each schema change reaches the write API Propagation after it was made,
// on its own: a table widened again before the first widening propagated
// still shows the write API the first one in time.
func TestEachWideningPropagatesOnItsOwn(t *testing.T) {
	s := newServer(t, Options{Propagation: 600 * time.Millisecond})
	bqc, mwc := clients(t, s)
	ctx := context.Background()
	one := bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}}
	two := append(one[:1:1], &bigquery.FieldSchema{Name: "a", Type: bigquery.StringFieldType})
	three := append(two[:2:2], &bigquery.FieldSchema{Name: "b", Type: bigquery.StringFieldType})
	tb := createTable(t, bqc, "audit", one)
	for _, schema := range []bigquery.Schema{two, three} {
		md, err := tb.Metadata(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Update(ctx, bigquery.TableMetadataToUpdate{Schema: schema}, md.ETag); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	// 800 ms after the first widening, 400 ms after the second.
	dp, md := descriptor(t, two)
	ms, err := mwc.NewManagedStream(ctx, managedwriter.WithDestinationTable(managedwriter.TableParentFromParts(project, "logs", "audit")),
		managedwriter.WithType(managedwriter.DefaultStream), managedwriter.WithSchemaDescriptor(dp))
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	res, err := ms.AppendRows(ctx, [][]byte{encode(t, md, map[string]any{"id": "1", "a": "x"})})
	if err == nil {
		_, err = res.GetResult(ctx)
	}
	if err != nil {
		t.Fatalf("a row of the first widening once it has propagated: %v", err)
	}
}
