// Package astjson is JSON as OPA sees it: a parsed record turned into a
// Rego value, a Rego value written as JSON, and the checks that say whether
// OPA would see a parsed record exactly as parsed. The policy engine (rego)
// and its fast path (rego/plan) both use it, so that the two read and write
// records the same way.
package astjson

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/jsonx"
)

// From converts a parsed value directly, without map[string]any: numbers
// keep their text, so nothing is lost and little is allocated. fastjson
// scans numbers loosely ("7+0", "nan" pass), and OPA panics on arithmetic
// with such a number, so each number's text is checked against JSON's
// grammar here.
func From(v *fastjson.Value) (ast.Value, error) {
	var err error
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		terms := make([][2]*ast.Term, 0, o.Len())
		o.Visit(func(k []byte, v *fastjson.Value) {
			if err != nil {
				return
			}
			var x ast.Value
			if x, err = From(v); err == nil {
				terms = append(terms, [2]*ast.Term{ast.StringTerm(string(k)), ast.NewTerm(x)})
			}
		})
		if err != nil {
			return nil, err
		}
		return ast.NewObject(terms...), nil
	case fastjson.TypeArray:
		a, _ := v.Array()
		terms := make([]*ast.Term, len(a))
		for i, x := range a {
			y, err := From(x)
			if err != nil {
				return nil, err
			}
			terms[i] = ast.NewTerm(y)
		}
		return ast.NewArray(terms...), nil
	case fastjson.TypeString:
		return ast.String(v.GetStringBytes()), nil
	case fastjson.TypeNumber:
		n := v.String()
		if !jsonx.ValidNumber(n) {
			return nil, fmt.Errorf("invalid number %q", n)
		}
		if !jsonx.TameNumber(n) {
			return nil, fmt.Errorf("number %q: exponent beyond ±1000, which policies cannot compute with in bounded time", n)
		}
		return ast.Number(n), nil
	case fastjson.TypeTrue:
		return ast.Boolean(true), nil
	case fastjson.TypeFalse:
		return ast.Boolean(false), nil
	}
	return ast.Null{}, nil
}

// Append encodes a Rego value as JSON, by hand: numbers keep their text,
// object keys their (sorted) order.
func Append(dst []byte, v ast.Value) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case ast.Null:
		return append(dst, "null"...), nil
	case ast.Boolean:
		return strconv.AppendBool(dst, bool(x)), nil
	case ast.Number:
		return append(dst, x...), nil
	case ast.String:
		return jsonx.AppendString(dst, string(x)), nil
	case *ast.Array:
		dst = append(dst, '[')
		for i := 0; i < x.Len() && err == nil; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst, err = Append(dst, x.Elem(i).Value)
		}
		return append(dst, ']'), err
	case ast.Set:
		dst = append(dst, '[')
		i := 0
		x.Foreach(func(t *ast.Term) {
			if err != nil {
				return
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			i++
			dst, err = Append(dst, t.Value)
		})
		return append(dst, ']'), err
	case ast.Object:
		return appendObject(dst, x)
	}
	return dst, fmt.Errorf("%s cannot be encoded as JSON", ast.ValueName(v))
}

func appendObject(dst []byte, x ast.Object) ([]byte, error) {
	var err error
	dst = append(dst, '{')
	for i, k := range x.Keys() {
		key, ok := k.Value.(ast.String)
		if !ok {
			return dst, fmt.Errorf("object key %s is not a string", k)
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonx.AppendString(dst, string(key))
		dst = append(dst, ':')
		if dst, err = Append(dst, x.Get(k).Value); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// Plain reports whether OPA would see the record exactly as parsed: every
// number valid JSON and tame (else OPA's path refuses the record), and no
// object with a key twice (OPA keeps the last, fastjson finds the first).
func Plain(j *fastjson.Value) bool {
	switch j.Type() {
	case fastjson.TypeObject:
		o, _ := j.Object()
		ok := true
		var few [32][]byte
		seen := few[:0] // a few keys: comparing beats hashing
		var many map[string]bool
		o.Visit(func(k []byte, v *fastjson.Value) {
			if !ok {
				return
			}
			if many == nil && len(seen) == len(few) {
				many = make(map[string]bool, o.Len())
				for _, s := range seen {
					many[string(s)] = true
				}
			}
			if many != nil {
				ok = !many[string(k)]
				many[string(k)] = true
			} else {
				ok = !slices.ContainsFunc(seen, func(s []byte) bool { return bytes.Equal(s, k) })
				seen = append(seen, k)
			}
			ok = ok && Plain(v)
		})
		return ok
	case fastjson.TypeArray:
		a, _ := j.Array()
		for _, x := range a {
			if !Plain(x) {
				return false
			}
		}
	case fastjson.TypeNumber:
		n := j.String()
		return jsonx.ValidNumber(n) && jsonx.TameNumber(n)
	}
	return true
}

// Child follows one step of a ref as OPA does: a key of an object, an
// index of an array; anything else is undefined (nil).
func Child(j *fastjson.Value, c ast.Value) *fastjson.Value {
	switch k := c.(type) {
	case ast.String:
		if j.Type() != fastjson.TypeObject {
			return nil
		}
		o, _ := j.Object()
		return o.Get(string(k))
	case ast.Number:
		if j.Type() != fastjson.TypeArray {
			return nil
		}
		i, ok := k.Int()
		a, _ := j.Array()
		if !ok || i < 0 || i >= len(a) {
			return nil
		}
		return a[i]
	}
	return nil
}
