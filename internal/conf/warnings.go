package conf

import (
	"fmt"
	"net"
	"net/url"
	"reflect"
	"sort"
)

// Warning is an insecure choice a config makes and is allowed to make:
// `sluice validate` prints it without failing and the node logs it at
// startup, so that nobody runs with one without being told.
type Warning struct {
	Path string // the field, named as a FieldError names it
	Line int    // 0 when unknown
	Msg  string // what the choice exposes; never a secret's value
}

func (w Warning) String() string {
	return (&FieldError{Path: w.Path, Line: w.Line, Msg: w.Msg}).Error()
}

// Warner is a config that can make insecure choices. Its warnings name
// its own fields, as its errors do; the node adds where it sits.
type Warner interface {
	Warnings() []Warning
}

// Warnings collects a config's warnings, one call per insecure knob.
type Warnings []Warning

// If adds a warning for path when on.
func (ws *Warnings) If(on bool, path, format string, args ...any) {
	if on {
		*ws = append(*ws, Warning{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
}

// LoopbackHost says whether host (no port) is this machine only:
// "localhost" or a loopback IP. An empty host listens everywhere.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackAddr is LoopbackHost for a host:port; false when it is not one.
func LoopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	return err == nil && LoopbackHost(host)
}

// CleartextURL says whether u is plain http to a host other than this
// machine: what it carries crosses the network readable.
func CleartextURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && p.Scheme == "http" && !LoopbackHost(p.Hostname())
}

var secretType = reflect.TypeOf(Secret(""))

// SecretPaths lists the fields of v (a struct or a pointer to one) that
// hold a non-empty Secret, named by their YAML keys as errors name them,
// sorted. Values behind interfaces are not walked: their owner decodes
// and names them.
func SecretPaths(v any) []string {
	var out []string
	walkSecrets(reflect.ValueOf(v), "", &out)
	sort.Strings(out)
	return out
}

func walkSecrets(v reflect.Value, path string, out *[]string) {
	if !v.IsValid() {
		return
	}
	switch {
	case v.Type() == secretType:
		if v.String() != "" {
			*out = append(*out, path)
		}
	case v.Type() == yamlNodeType:
	case v.Kind() == reflect.Pointer:
		if !v.IsNil() {
			walkSecrets(v.Elem(), path, out)
		}
	case v.Kind() == reflect.Struct:
		for name, idx := range yamlFields(v.Type()) {
			walkSecrets(v.FieldByIndex(idx), join(path, name), out)
		}
	case v.Kind() == reflect.Slice:
		for i := range v.Len() {
			walkSecrets(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}
