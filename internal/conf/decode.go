package conf

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is a configuration error that names the field at fault.
type FieldError struct {
	Path string // e.g. sinks[0].token
	Line int    // 0 when unknown
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Errorf returns a FieldError for path.
func Errorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Prefix puts prefix in front of the path of every FieldError inside err, so
// a component can name its own fields and the node adds where it sits.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		p := *fe
		p.Path = join(prefix, fe.Path)
		return &p
	}
	return &FieldError{Path: prefix, Msg: err.Error()}
}

func join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "" || strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}

// DecodeStrict decodes a YAML node into out (a pointer to a struct), refusing
// keys that out has no field for. path names n in errors ("" at the top).
// Nested structs are decoded the same way; other values by yaml.v3.
func DecodeStrict(n *yaml.Node, path string, out any) error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("DecodeStrict: want a non-nil pointer, got %T", out)
	}
	return decodeValue(n, path, v.Elem())
}

func decodeValue(n *yaml.Node, path string, v reflect.Value) error {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if v.Type() == yamlNodeType {
		v.Set(reflect.ValueOf(*n)) // decoded later by whoever owns it
		return nil
	}
	if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct && !hasUnmarshaler(v.Type()) {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return decodeValue(n, path, v.Elem())
	}
	if v.Kind() == reflect.Struct && !hasUnmarshaler(reflect.PointerTo(v.Type())) {
		return decodeStruct(n, path, v)
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct && n.Kind == yaml.SequenceNode {
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeValue(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return &FieldError{Path: path, Line: n.Line, Msg: cleanYAMLError(err)}
	}
	return nil
}

func decodeStruct(n *yaml.Node, path string, v reflect.Value) error {
	if n.Kind != yaml.MappingNode {
		return &FieldError{Path: orTop(path), Line: n.Line, Msg: fmt.Sprintf("want a mapping of keys, got %s", describe(n))}
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		fieldPath := join(path, key.Value)
		idx, ok := fields[key.Value]
		if !ok {
			return &FieldError{Path: fieldPath, Line: key.Line, Msg: fmt.Sprintf("unknown key %q (known: %s)", key.Value, strings.Join(sortedKeys(fields), ", "))}
		}
		if seen[key.Value] {
			return &FieldError{Path: fieldPath, Line: key.Line, Msg: "key given twice"}
		}
		seen[key.Value] = true
		if err := decodeValue(val, fieldPath, v.FieldByIndex(idx)); err != nil {
			return err
		}
	}
	return nil
}

func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

var yamlNodeType = reflect.TypeOf(yaml.Node{})

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func hasUnmarshaler(t reflect.Type) bool { return t.Implements(unmarshalerType) }

// yamlFields maps the YAML key of each exported field to its index.
func yamlFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Index
	}
	return out
}

func sortedKeys(m map[string][]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// cleanYAMLError turns yaml.v3's "yaml: unmarshal errors:\n  line 3: cannot
// unmarshal !!str `x` into int" into "cannot unmarshal !!str `x` into int".
func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i > 0 {
		msg = msg[i+2:]
	}
	return msg
}
