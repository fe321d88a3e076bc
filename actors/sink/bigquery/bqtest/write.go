package bqtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
)

// maxRequest is BigQuery's limit on one AppendRows request.
const maxRequest = 10 << 20

// writeServer is the BigQueryWrite gRPC service.
type writeServer struct {
	storagepb.UnimplementedBigQueryWriteServer
	s *Server
}

// streamRef is a parsed write stream name:
// projects/P/datasets/D/tables/T/streams/S (S is "_default" for the default stream).
type streamRef struct{ project, dataset, table, stream string }

func parseStream(name string) (streamRef, error) {
	p := strings.Split(name, "/")
	if len(p) != 8 || p[0] != "projects" || p[2] != "datasets" || p[4] != "tables" || p[6] != "streams" {
		return streamRef{}, status.Errorf(codes.InvalidArgument, "Invalid stream name. Entity: %s", name)
	}
	return streamRef{p[1], p[3], p[5], p[7]}, nil
}

func parseTable(name string) (streamRef, error) {
	return parseStream(name + "/streams/_default")
}

func (r streamRef) String() string {
	return fmt.Sprintf("projects/%s/datasets/%s/tables/%s/streams/%s", r.project, r.dataset, r.table, r.stream)
}

// storageError is an error status with BigQuery's StorageError detail, as
// the client reads it with apierror.
func storageError(c codes.Code, code storagepb.StorageError_StorageErrorCode, entity, format string, args ...any) *status.Status {
	msg := fmt.Sprintf(format, args...)
	st, err := status.New(c, msg).WithDetails(&storagepb.StorageError{Code: code, Entity: entity, ErrorMessage: msg})
	if err != nil {
		return status.New(c, msg)
	}
	return st
}

func (w *writeServer) GetWriteStream(_ context.Context, req *storagepb.GetWriteStreamRequest) (*storagepb.WriteStream, error) {
	ref, err := parseStream(req.GetName())
	if err != nil {
		return nil, err
	}
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tableLocked(ref.project, ref.dataset, ref.table)
	if t == nil {
		return nil, storageError(codes.NotFound, storagepb.StorageError_TABLE_NOT_FOUND, req.GetName(), "Requested entity was not found. Entity: %s", req.GetName()).Err()
	}
	ws := &storagepb.WriteStream{Name: ref.String(), Type: storagepb.WriteStream_COMMITTED, Location: "US",
		CreateTime: timestamppb.New(time.UnixMilli(t.meta.CreationTime))}
	if ref.stream != "_default" {
		st := s.streams[ref.String()]
		if st == nil {
			return nil, storageError(codes.NotFound, storagepb.StorageError_STREAM_NOT_FOUND, req.GetName(), "Requested entity was not found. Entity: %s", req.GetName()).Err()
		}
		ws.Type = st.kind
	}
	if req.GetView() == storagepb.WriteStreamView_FULL {
		ws.TableSchema = toStorageSchema(t.currentWriteSchema())
	}
	return ws, nil
}

// AppendRows serves one connection: its first request names the stream and
// carries the writer schema; later ones may carry only rows.
func (w *writeServer) AppendRows(stream storagepb.BigQueryWrite_AppendRowsServer) error {
	c := &conn{s: w.s}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := c.append(req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// conn is one AppendRows connection's state.
type conn struct {
	s        *Server
	stream   string
	md       protoreflect.MessageDescriptor
	reported *bq.TableSchema // the schema last sent back as UpdatedSchema
}

func (c *conn) append(req *storagepb.AppendRowsRequest) (*storagepb.AppendRowsResponse, error) {
	if req.GetWriteStream() != "" {
		c.stream = req.GetWriteStream()
	}
	if c.stream == "" {
		return nil, status.Error(codes.InvalidArgument, "The first request on a connection must name the write stream")
	}
	rows := req.GetProtoRows()
	if rows == nil {
		return nil, status.Error(codes.InvalidArgument, "Only proto rows are supported by this stand-in")
	}
	if ws := rows.GetWriterSchema(); ws != nil {
		md, err := messageDescriptor(ws.GetProtoDescriptor())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid proto schema: %v", err)
		}
		c.md = md
	}
	if c.md == nil {
		return nil, status.Error(codes.InvalidArgument, "The first request on a connection must carry the writer schema")
	}
	ref, err := parseStream(c.stream)
	if err != nil {
		return nil, err
	}
	if n, limit := proto.Size(req), c.s.opts.MaxRequest; n > limit {
		// BigQuery's answer, word for word (reported by its users; the
		// Rust client and Beam treat it as INVALID_ARGUMENT): the
		// connection ends with it.
		return nil, status.Errorf(codes.InvalidArgument, "AppendRows request too large: %d limit %d Entity: %s", n, limit, c.stream)
	}
	s := c.s
	s.mu.Lock()
	slow, fail := s.faults.slow, s.faults.unavailable > 0
	if fail {
		s.faults.unavailable--
	}
	fail = fail || s.faults.down[ref.dataset+"."+ref.table]
	rowErr := s.faults.rowError
	s.mu.Unlock()
	if slow > 0 {
		time.Sleep(slow)
	}
	if fail {
		return nil, status.Error(codes.Unavailable, "The service is currently unavailable (injected).")
	}
	resp := &storagepb.AppendRowsResponse{WriteStream: c.stream}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tableLocked(ref.project, ref.dataset, ref.table)
	if t == nil {
		resp.Response = &storagepb.AppendRowsResponse_Error{Error: storageError(codes.NotFound, storagepb.StorageError_TABLE_NOT_FOUND, c.stream,
			"Table is deleted: %s:%s.%s", ref.project, ref.dataset, ref.table).Proto()}
		return resp, nil
	}
	if ref.stream == "_default" && req.GetOffset() != nil {
		return nil, status.Error(codes.InvalidArgument, "Offset is not supported on the _default stream")
	}
	schema := t.currentWriteSchema()
	if err := checkDescriptor(c.md, schema.Fields, ""); err != nil {
		resp.Response = &storagepb.AppendRowsResponse_Error{Error: err.Proto()}
		return resp, nil
	}
	var decoded []map[string]any
	for i, raw := range rows.GetRows().GetSerializedRows() {
		msg := dynamicpb.NewMessage(c.md)
		if err := proto.Unmarshal(raw, msg); err != nil {
			resp.RowErrors = append(resp.RowErrors, &storagepb.RowError{Index: int64(i), Code: storagepb.RowError_FIELDS_ERROR, Message: "cannot decode the row: " + err.Error()})
			continue
		}
		row := toRow(msg, schema.Fields)
		if rowErr != nil {
			if m := rowErr(ref.table, row); m != "" {
				resp.RowErrors = append(resp.RowErrors, &storagepb.RowError{Index: int64(i), Code: storagepb.RowError_FIELDS_ERROR, Message: m})
				continue
			}
		}
		decoded = append(decoded, row)
	}
	if len(resp.RowErrors) > 0 { // nothing of a request with a bad row is written
		resp.Response = &storagepb.AppendRowsResponse_Error{Error: status.New(codes.InvalidArgument,
			fmt.Sprintf("Errors found while processing rows. Please refer to the row_errors field for details. The list may not be complete. Entity: %s", c.stream)).Proto()}
		return resp, nil
	}
	offset, werr := s.writeLocked(ref, t, decoded, req.GetOffset())
	if werr != nil {
		resp.Response = &storagepb.AppendRowsResponse_Error{Error: werr.Proto()}
		return resp, nil
	}
	s.appends++
	result := &storagepb.AppendRowsResponse_AppendResult{}
	if ref.stream != "_default" {
		result.Offset = wrapperspb.Int64(offset)
	}
	resp.Response = &storagepb.AppendRowsResponse_AppendResult_{AppendResult: result}
	// The table has columns the writer does not know: say so once per schema.
	if c.reported != schema && lacksColumns(c.md, schema.Fields) {
		resp.UpdatedSchema = toStorageSchema(schema)
		c.reported = schema
	}
	return resp, nil
}

// messageDescriptor builds the writer's message type from its descriptor
// (self-contained after managedwriter's NormalizeDescriptor).
func messageDescriptor(dp *descriptorpb.DescriptorProto) (protoreflect.MessageDescriptor, error) {
	if dp == nil {
		return nil, errors.New("no proto descriptor")
	}
	fdp := &descriptorpb.FileDescriptorProto{Name: proto.String("bqtest_writer.proto"), Syntax: proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{dp}}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		return nil, err
	}
	return fd.Messages().Get(0), nil
}

// checkDescriptor refuses a writer schema with a field the table (as the
// write API sees it) does not have, or of an incompatible type.
func checkDescriptor(md protoreflect.MessageDescriptor, cols []*bq.TableFieldSchema, prefix string) *status.Status {
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		col := column(cols, string(f.Name()))
		if col == nil {
			return storageError(codes.InvalidArgument, storagepb.StorageError_SCHEMA_MISMATCH_EXTRA_FIELDS, prefix+string(f.Name()),
				"Input schema has more fields than BigQuery schema, extra fields: '%s%s'", prefix, f.Name())
		}
		if !compatible(f, canonicalType(col.Type)) {
			return status.New(codes.InvalidArgument, fmt.Sprintf("The proto field %s%s mismatched with BigQuery field at %s%s, the proto field type %s, BigQuery field type %s",
				prefix, f.Name(), prefix, col.Name, f.Kind(), col.Type))
		}
		if f.Kind() == protoreflect.MessageKind {
			if st := checkDescriptor(f.Message(), col.Fields, prefix+col.Name+"."); st != nil {
				return st
			}
		}
	}
	return nil
}

// lacksColumns says whether the table has a column the writer schema lacks.
func lacksColumns(md protoreflect.MessageDescriptor, cols []*bq.TableFieldSchema) bool {
	for _, c := range cols {
		f := md.Fields().ByName(protoreflect.Name(strings.ToLower(c.Name)))
		if f == nil {
			f = md.Fields().ByName(protoreflect.Name(c.Name))
		}
		if f == nil || (f.Kind() == protoreflect.MessageKind && lacksColumns(f.Message(), c.Fields)) {
			return true
		}
	}
	return false
}

func column(cols []*bq.TableFieldSchema, name string) *bq.TableFieldSchema {
	for _, c := range cols {
		if strings.EqualFold(c.Name, name) {
			return c
		}
	}
	return nil
}

func compatible(f protoreflect.FieldDescriptor, colType string) bool {
	k := f.Kind()
	isInt := k == protoreflect.Int64Kind || k == protoreflect.Int32Kind || k == protoreflect.Sint64Kind || k == protoreflect.Sint32Kind ||
		k == protoreflect.Uint32Kind || k == protoreflect.Uint64Kind || k == protoreflect.Sfixed64Kind || k == protoreflect.Fixed64Kind
	switch colType {
	case "STRING", "JSON", "GEOGRAPHY":
		return k == protoreflect.StringKind
	case "INTEGER":
		return isInt
	case "FLOAT":
		return k == protoreflect.DoubleKind || k == protoreflect.FloatKind
	case "BOOLEAN":
		return k == protoreflect.BoolKind
	case "TIMESTAMP", "DATE", "DATETIME", "TIME":
		return isInt || k == protoreflect.StringKind
	case "RECORD":
		return k == protoreflect.MessageKind
	case "BYTES":
		return k == protoreflect.BytesKind
	case "NUMERIC", "BIGNUMERIC":
		return k == protoreflect.StringKind || k == protoreflect.BytesKind
	}
	return false
}

// toRow turns a decoded message into a row keyed by column name;
// TIMESTAMP microseconds become time.Time.
func toRow(msg protoreflect.Message, cols []*bq.TableFieldSchema) map[string]any {
	row := map[string]any{}
	msg.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		col := column(cols, string(f.Name()))
		if col == nil {
			return true
		}
		if f.IsList() {
			list := v.List()
			out := make([]any, list.Len())
			for i := range out {
				out[i] = cellOf(f, list.Get(i), col)
			}
			row[col.Name] = out
			return true
		}
		row[col.Name] = cellOf(f, v, col)
		return true
	})
	return row
}

func cellOf(f protoreflect.FieldDescriptor, v protoreflect.Value, col *bq.TableFieldSchema) any {
	switch f.Kind() {
	case protoreflect.MessageKind:
		return toRow(v.Message(), col.Fields)
	case protoreflect.BytesKind:
		return append([]byte(nil), v.Bytes()...)
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		return v.Float()
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return int64(v.Uint())
	}
	n := v.Int()
	if canonicalType(col.Type) == "TIMESTAMP" {
		return time.UnixMicro(n).UTC()
	}
	return n
}

var storageTypes = map[string]storagepb.TableFieldSchema_Type{
	"STRING": storagepb.TableFieldSchema_STRING, "INTEGER": storagepb.TableFieldSchema_INT64, "FLOAT": storagepb.TableFieldSchema_DOUBLE,
	"BOOLEAN": storagepb.TableFieldSchema_BOOL, "TIMESTAMP": storagepb.TableFieldSchema_TIMESTAMP, "RECORD": storagepb.TableFieldSchema_STRUCT,
	"BYTES": storagepb.TableFieldSchema_BYTES, "DATE": storagepb.TableFieldSchema_DATE, "DATETIME": storagepb.TableFieldSchema_DATETIME,
	"TIME": storagepb.TableFieldSchema_TIME, "NUMERIC": storagepb.TableFieldSchema_NUMERIC, "BIGNUMERIC": storagepb.TableFieldSchema_BIGNUMERIC,
	"JSON": storagepb.TableFieldSchema_JSON, "GEOGRAPHY": storagepb.TableFieldSchema_GEOGRAPHY,
}

// toStorageSchema is the write API's form of a REST schema.
func toStorageSchema(ts *bq.TableSchema) *storagepb.TableSchema {
	if ts == nil {
		return &storagepb.TableSchema{}
	}
	return &storagepb.TableSchema{Fields: toStorageFields(ts.Fields)}
}

func toStorageFields(cols []*bq.TableFieldSchema) []*storagepb.TableFieldSchema {
	out := make([]*storagepb.TableFieldSchema, len(cols))
	for i, c := range cols {
		m := storagepb.TableFieldSchema_NULLABLE
		switch c.Mode {
		case "REQUIRED":
			m = storagepb.TableFieldSchema_REQUIRED
		case "REPEATED":
			m = storagepb.TableFieldSchema_REPEATED
		}
		out[i] = &storagepb.TableFieldSchema{Name: c.Name, Type: storageTypes[canonicalType(c.Type)], Mode: m, Fields: toStorageFields(c.Fields)}
	}
	return out
}

// Explicitly created streams: COMMITTED rows land at once, PENDING ones at
// BatchCommitWriteStreams, BUFFERED ones up to FlushRows' offset.
type writeStream struct {
	ref       streamRef
	kind      storagepb.WriteStream_Type
	rows      []map[string]any // all rows appended, by offset
	landed    int              // rows[:landed] are in the table
	finalized bool
}

func (s *Server) writeLocked(ref streamRef, t *table, rows []map[string]any, offset *wrapperspb.Int64Value) (int64, *status.Status) {
	if ref.stream == "_default" {
		s.land(t, rows)
		return 0, nil
	}
	st := s.streams[ref.String()]
	if st == nil {
		return 0, storageError(codes.NotFound, storagepb.StorageError_STREAM_NOT_FOUND, ref.String(), "Stream is not found: %s", ref)
	}
	if st.finalized {
		return 0, storageError(codes.InvalidArgument, storagepb.StorageError_STREAM_FINALIZED, ref.String(), "Stream is finalized: %s", ref)
	}
	at := int64(len(st.rows))
	if offset != nil && offset.GetValue() != at {
		code, detail := codes.OutOfRange, storagepb.StorageError_OFFSET_OUT_OF_RANGE
		if offset.GetValue() < at {
			code, detail = codes.AlreadyExists, storagepb.StorageError_OFFSET_ALREADY_EXISTS
		}
		return 0, storageError(code, detail, ref.String(), "The offset %d is not the end of the stream (%d)", offset.GetValue(), at)
	}
	st.rows = append(st.rows, rows...)
	if st.kind == storagepb.WriteStream_COMMITTED {
		s.land(t, rows)
		st.landed = len(st.rows)
	}
	return at, nil
}

func (w *writeServer) CreateWriteStream(_ context.Context, req *storagepb.CreateWriteStreamRequest) (*storagepb.WriteStream, error) {
	ref, err := parseTable(req.GetParent())
	if err != nil {
		return nil, err
	}
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tableLocked(ref.project, ref.dataset, ref.table) == nil {
		return nil, storageError(codes.NotFound, storagepb.StorageError_TABLE_NOT_FOUND, req.GetParent(), "Table not found: %s", req.GetParent()).Err()
	}
	kind := req.GetWriteStream().GetType()
	if kind == storagepb.WriteStream_TYPE_UNSPECIFIED {
		kind = storagepb.WriteStream_PENDING
	}
	s.nextStream++
	ref.stream = "s" + strconv.Itoa(s.nextStream)
	s.streams[ref.String()] = &writeStream{ref: ref, kind: kind}
	return &storagepb.WriteStream{Name: ref.String(), Type: kind, CreateTime: timestamppb.Now(), Location: "US"}, nil
}

func (w *writeServer) FinalizeWriteStream(_ context.Context, req *storagepb.FinalizeWriteStreamRequest) (*storagepb.FinalizeWriteStreamResponse, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[req.GetName()]
	if st == nil {
		return nil, storageError(codes.NotFound, storagepb.StorageError_STREAM_NOT_FOUND, req.GetName(), "Stream is not found: %s", req.GetName()).Err()
	}
	st.finalized = true
	return &storagepb.FinalizeWriteStreamResponse{RowCount: int64(len(st.rows))}, nil
}

func (w *writeServer) BatchCommitWriteStreams(_ context.Context, req *storagepb.BatchCommitWriteStreamsRequest) (*storagepb.BatchCommitWriteStreamsResponse, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &storagepb.BatchCommitWriteStreamsResponse{}
	var ok []*writeStream
	for _, name := range req.GetWriteStreams() {
		st := s.streams[name]
		switch {
		case st == nil:
			resp.StreamErrors = append(resp.StreamErrors, &storagepb.StorageError{Code: storagepb.StorageError_STREAM_NOT_FOUND, Entity: name, ErrorMessage: "stream not found"})
		case !st.finalized:
			resp.StreamErrors = append(resp.StreamErrors, &storagepb.StorageError{Code: storagepb.StorageError_INVALID_STREAM_STATE, Entity: name, ErrorMessage: "stream not finalized"})
		default:
			ok = append(ok, st)
		}
	}
	if len(resp.StreamErrors) > 0 { // all or nothing
		return resp, nil
	}
	for _, st := range ok {
		if t := s.tableLocked(st.ref.project, st.ref.dataset, st.ref.table); t != nil {
			s.land(t, st.rows[st.landed:])
			st.landed = len(st.rows)
		}
	}
	resp.CommitTime = timestamppb.Now()
	return resp, nil
}

func (w *writeServer) FlushRows(_ context.Context, req *storagepb.FlushRowsRequest) (*storagepb.FlushRowsResponse, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[req.GetWriteStream()]
	if st == nil || st.kind != storagepb.WriteStream_BUFFERED {
		return nil, storageError(codes.InvalidArgument, storagepb.StorageError_INVALID_STREAM_TYPE, req.GetWriteStream(), "FlushRows needs a BUFFERED stream").Err()
	}
	upTo := int(req.GetOffset().GetValue()) + 1
	if upTo > len(st.rows) {
		return nil, storageError(codes.OutOfRange, storagepb.StorageError_OFFSET_OUT_OF_RANGE, req.GetWriteStream(), "offset %d is beyond the stream's end", upTo-1).Err()
	}
	if t := s.tableLocked(st.ref.project, st.ref.dataset, st.ref.table); t != nil && upTo > st.landed {
		s.land(t, st.rows[st.landed:upTo])
		st.landed = upTo
	}
	return &storagepb.FlushRowsResponse{Offset: int64(upTo - 1)}, nil
}
