package bigquery

import (
	"fmt"
	"math"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
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
// TIMESTAMP as int64 microseconds.
func (t *rowType) encode(values map[string]any) ([]byte, error) {
	m := dynamicpb.NewMessage(t.md)
	if err := setMessage(m, values, ""); err != nil {
		return nil, err
	}
	return proto.Marshal(m)
}

func setMessage(m protoreflect.Message, values map[string]any, prefix string) error {
	fields := m.Descriptor().Fields()
	for k, v := range values {
		f := fields.ByName(protoreflect.Name(k))
		if f == nil {
			f = fields.ByName(protoreflect.Name(strings.ToLower(k)))
		}
		if f == nil {
			return fmt.Errorf("field %s%s: not a column of the stream's schema", prefix, k)
		}
		switch {
		case f.IsList():
			items, ok := v.([]any)
			if !ok {
				return fmt.Errorf("field %s%s: want a list, have %T", prefix, k, v)
			}
			l := m.Mutable(f).List()
			for _, e := range items {
				if f.Kind() == protoreflect.MessageKind {
					el := l.NewElement()
					sub, ok := e.(map[string]any)
					if !ok {
						return fmt.Errorf("field %s%s: want a record, have %T", prefix, k, e)
					}
					if err := setMessage(el.Message(), sub, prefix+k+"."); err != nil {
						return err
					}
					l.Append(el)
					continue
				}
				pv, err := scalar(f, e)
				if err != nil {
					return fmt.Errorf("field %s%s: %w", prefix, k, err)
				}
				l.Append(pv)
			}
		case f.Kind() == protoreflect.MessageKind:
			sub, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("field %s%s: want a record, have %T", prefix, k, v)
			}
			if err := setMessage(m.Mutable(f).Message(), sub, prefix+k+"."); err != nil {
				return err
			}
		default:
			pv, err := scalar(f, v)
			if err != nil {
				return fmt.Errorf("field %s%s: %w", prefix, k, err)
			}
			m.Set(f, pv)
		}
	}
	return nil
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
