package bigquery

import (
	"fmt"
	"math"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// rowType is a table schema's message type for the write API, and the
// normalized descriptor that the first append of a connection carries.
type rowType struct {
	schema bigquery.Schema
	md     protoreflect.MessageDescriptor
	dp     *descriptorpb.DescriptorProto
}

func newRowType(schema bigquery.Schema) (*rowType, error) {
	ss, err := adapt.BQSchemaToStorageTableSchema(schema)
	if err != nil {
		return nil, fmt.Errorf("schema for the write API: %w", err)
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ss, "row")
	if err != nil {
		return nil, fmt.Errorf("row descriptor: %w", err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("row descriptor is a %T", d)
	}
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		return nil, fmt.Errorf("row descriptor: %w", err)
	}
	return &rowType{schema: schema, md: md, dp: dp}, nil
}

// encode serializes a row's values as the write API wants them:
// TIMESTAMP as int64 microseconds. It writes the wire format straight from
// the values (protowire) instead of filling a dynamicpb message first: that
// was a quarter of the sink's CPU. TestEncodeMatchesDynamicpb holds the two
// to the same message.
func (t *rowType) encode(values map[string]any) ([]byte, error) {
	return appendMessage(nil, t.md, values, "")
}

func appendMessage(dst []byte, md protoreflect.MessageDescriptor, values map[string]any, prefix string) ([]byte, error) {
	fields := md.Fields()
	for k, v := range values {
		f := fields.ByName(protoreflect.Name(k))
		if f == nil {
			f = fieldFolded(fields, k)
		}
		if f == nil {
			return nil, fmt.Errorf("field %s%s: not a column of the stream's schema", prefix, k)
		}
		var err error
		switch {
		case f.IsList():
			items, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("field %s%s: want a list, have %T", prefix, k, v)
			}
			for _, e := range items {
				if dst, err = appendField(dst, f, e, prefix+k); err != nil {
					return nil, err
				}
			}
		default:
			if dst, err = appendField(dst, f, v, prefix+k); err != nil {
				return nil, err
			}
		}
	}
	return dst, nil
}

// fieldFolded finds a field by name ignoring case, as BigQuery matches
// column names: the row says host, the table (and so the descriptor) Host.
// Only a key not found as written comes here. (Prepare refuses a row with
// two keys that differ only in case, so one field never gets two values.)
func fieldFolded(fields protoreflect.FieldDescriptors, k string) protoreflect.FieldDescriptor {
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); strings.EqualFold(string(f.Name()), k) {
			return f
		}
	}
	return nil
}

// appendField appends one value of field f (one element, for a list).
func appendField(dst []byte, f protoreflect.FieldDescriptor, v any, path string) ([]byte, error) {
	num := f.Number()
	if f.Kind() == protoreflect.MessageKind {
		sub, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("field %s: want a record, have %T", path, v)
		}
		b, err := appendMessage(nil, f.Message(), sub, path+".")
		if err != nil {
			return nil, err
		}
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendBytes(dst, b), nil
	}
	pv, err := scalar(f, v)
	if err != nil {
		return nil, fmt.Errorf("field %s: %w", path, err)
	}
	switch f.Kind() {
	case protoreflect.Int64Kind, protoreflect.Int32Kind:
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, uint64(pv.Int())), nil
	case protoreflect.DoubleKind:
		dst = protowire.AppendTag(dst, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, math.Float64bits(pv.Float())), nil
	case protoreflect.StringKind:
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendString(dst, pv.String()), nil
	case protoreflect.BoolKind:
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, protowire.EncodeBool(pv.Bool())), nil
	case protoreflect.BytesKind:
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendBytes(dst, pv.Bytes()), nil
	}
	return nil, fmt.Errorf("field %s: a %s column is not supported", path, f.Kind())
}

func scalar(f protoreflect.FieldDescriptor, v any) (protoreflect.Value, error) {
	switch f.Kind() {
	case protoreflect.Int64Kind, protoreflect.Int32Kind:
		switch x := v.(type) {
		case int64:
			return protoreflect.ValueOfInt64(x), nil
		case time.Time:
			return protoreflect.ValueOfInt64(x.UnixMicro()), nil
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
				return protoreflect.ValueOfInt64(int64(x)), nil
			}
		}
	case protoreflect.DoubleKind:
		switch x := v.(type) {
		case float64:
			return protoreflect.ValueOfFloat64(x), nil
		case int64:
			return protoreflect.ValueOfFloat64(float64(x)), nil
		}
	case protoreflect.StringKind:
		if x, ok := v.(string); ok {
			return protoreflect.ValueOfString(x), nil
		}
	case protoreflect.BoolKind:
		if x, ok := v.(bool); ok {
			return protoreflect.ValueOfBool(x), nil
		}
	case protoreflect.BytesKind:
		if x, ok := v.(string); ok {
			return protoreflect.ValueOfBytes([]byte(x)), nil
		}
	}
	return protoreflect.Value{}, fmt.Errorf("a %T does not fit a %s column", v, f.Kind())
}
