package rego

import (
	"fmt"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/open-policy-agent/opa/v1/ast"
)

// denied are built-ins a policy may not call: they reach the network or the
// host, or read the runtime's environment. Policies only look at the record.
func denied(name string) bool {
	switch {
	case name == "http.send", name == "opa.runtime", name == "rego.parse_module":
		return true
	case strings.HasPrefix(name, "net."):
		return true
	}
	return false
}

// sandboxCapabilities are this OPA's capabilities without the denied built-ins.
func sandboxCapabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0]
	for _, b := range caps.Builtins {
		if !denied(b.Name) {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	caps.AllowNet = []string{} // and no host for what remains
	return caps
}

func newCompiler() *ast.Compiler {
	return ast.NewCompiler().WithCapabilities(sandboxCapabilities()).WithEnablePrintStatements(false)
}

// commonMistakes are names that look like built-ins but are not; Swarm's
// README uses the first two.
var commonMistakes = map[string]string{
	"starts_with": "startswith",
	"ends_with":   "endswith",
	"contains":    "contains (strings) or `x in set`",
	"to_string":   "format_int or sprintf",
	"lower_case":  "lower",
	"upper_case":  "upper",
}

// describe rewrites an OPA error to name the file, line and what to do.
func describe(e *ast.Error) string {
	loc := ""
	if e.Location != nil {
		loc = fmt.Sprintf("%s:%d: ", e.Location.File, e.Location.Row)
	}
	msg := e.Message
	if name, ok := strings.CutPrefix(msg, "undefined function "); ok {
		switch {
		case denied(name):
			return fmt.Sprintf("%sbuilt-in %s is not allowed in sluice policies (they may not reach the network or the host)", loc, name)
		case commonMistakes[name] != "":
			return fmt.Sprintf("%sundefined function %s; did you mean %s?", loc, name, commonMistakes[name])
		default:
			if s := closestBuiltin(name); s != "" {
				return fmt.Sprintf("%sundefined function %s; did you mean %s?", loc, name, s)
			}
		}
	}
	return loc + msg
}

// closestBuiltin is the allowed built-in nearest to name, if near enough.
func closestBuiltin(name string) string {
	best, bestD := "", 4
	bare := strings.ReplaceAll(name, "_", "")
	for _, b := range sandboxCapabilities().Builtins {
		if b.Infix != "" {
			continue
		}
		d := levenshtein.ComputeDistance(bare, strings.ReplaceAll(b.Name, "_", ""))
		if d < bestD {
			best, bestD = b.Name, d
		}
	}
	return best
}
