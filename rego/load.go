// Package rego loads, checks and evaluates sluice's Rego policies: the
// `event` package decides how to read a source event, each `schema.<name>`
// package turns one record into outputs. Swarm's policies run unchanged.
//
// OPA evaluates them. A schema policy of the common shape also gets a plan
// (rego/plan), its fast path, which answers most records without OPA's
// evaluator; a record the plan is unsure of, and every policy it cannot
// plan, goes to OPA. This package chooses between the two and checks both
// paths' outputs the same way.
package rego

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/valyala/fastjson"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/rego/internal/astjson"
	"github.com/sluicehq/sluice/rego/plan"
)

// policySet is one compiled, immutable generation of a policy directory.
type policySet struct {
	version  string // hash of every file's name and content
	modules  map[string]*ast.Module
	compiler *ast.Compiler
	store    storage.Store
	event    ast.Body // compiled `__result__ = data.event.src`; nil without an event package
	schemas  map[string]ast.Body
	plans    map[string]*plan.Plan // schema policies with a fast path
	noPlans  map[string]string     // the others, and why
	files    []string
	// events caches the event policy's answers (nil: it calls a built-in
	// whose answer may change, such as time.now_ns or http.send). Every
	// batch of a source carries its event, and most are alike.
	events *eventCache
}

// readDir reads the .rego and data files of dir, tests included.
func readDir(dir string) (map[string]string, map[string]any, string, error) {
	sources := map[string]string{}
	data := map[string]any{}
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		isData := name == "data.json" || name == "data.yaml" || name == "data.yml"
		if !strings.HasSuffix(name, ".rego") && !isData {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h.Write([]byte(rel))
		h.Write(b)
		if !isData {
			sources[rel] = string(b)
			return nil
		}
		var doc any
		if strings.HasSuffix(name, ".json") {
			err = json.Unmarshal(b, &doc)
		} else {
			err = yaml.Unmarshal(b, &doc)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		// data files sit at data.<their directory path>, as in OPA.
		return mergeAt(data, strings.Split(filepath.Dir(rel), string(filepath.Separator)), doc, rel)
	})
	if err != nil {
		return nil, nil, "", err
	}
	return sources, data, hex.EncodeToString(h.Sum(nil))[:12], nil
}

func mergeAt(root map[string]any, path []string, doc any, file string) error {
	node := root
	for _, p := range path {
		if p == "." || p == "" {
			continue
		}
		next, ok := node[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			node[p] = next
		}
		node = next
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: top level must be an object", file)
	}
	for k, v := range obj {
		node[k] = v
	}
	return nil
}

// parseModule reads Rego v1 syntax; a file that is not valid v1 but valid
// v0 (Swarm's `src[s] { … }`) is read as v0. The v1 error is the one shown
// when neither parses.
func parseModule(name, src string) (*ast.Module, error) {
	m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err == nil {
		return m, nil
	}
	if m0, err0 := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV0, ProcessAnnotation: true}); err0 == nil {
		return m0, nil
	}
	return nil, err
}

// compile parses and compiles a directory under the sandbox capabilities.
func compile(dir string) (*policySet, error) {
	sources, data, version, err := readDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policies %s: %w", dir, err)
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("policies %s: no .rego files", dir)
	}
	ps := &policySet{version: version, modules: map[string]*ast.Module{}}
	for name, src := range sources {
		m, err := parseModule(filepath.Join(dir, name), src)
		if err != nil {
			return nil, explain(err)
		}
		ps.modules[name] = m
		ps.files = append(ps.files, name)
	}
	sort.Strings(ps.files)
	ps.compiler = newCompiler()
	ps.compiler.Compile(ps.modules)
	if ps.compiler.Failed() {
		return nil, explain(ps.compiler.Errors)
	}
	ps.store = inmem.NewFromObject(data)
	if err := ps.prepare(); err != nil {
		return nil, err
	}
	return ps, nil
}

// prepare builds the event query and one query per schema package.
func (s *policySet) prepare() error {
	ctx := context.Background()
	s.schemas = map[string]ast.Body{}
	s.plans = map[string]*plan.Plan{}
	s.noPlans = map[string]string{}
	if deterministic(s.modules) {
		s.events = &eventCache{answers: map[string][]Source{}, paths: eventInputPaths(s.modules)}
	}
	for _, m := range s.modules {
		path := m.Package.Path.String() // data.schema.github_audit
		name, ok := strings.CutPrefix(path, "data.schema.")
		switch {
		case path == "data.event":
			if s.event == nil && hasRule(m, "src") {
				q, err := s.query(ctx, "data.event.src")
				if err != nil {
					return err
				}
				s.event = q
			}
		case ok && !strings.Contains(name, ".") && hasRule(m, "log"):
			if _, done := s.schemas[name]; done {
				continue
			}
			q, err := s.query(ctx, path+".log")
			if err != nil {
				return err
			}
			s.schemas[name] = q
			if p, err := plan.Compile(s.compiler, path); err == nil {
				s.plans[name] = p
			} else {
				s.noPlans[name] = err.Error()
			}
		}
	}
	return nil
}

// deterministic reports whether no policy calls a built-in whose answer may
// change from call to call, so that an answer may be reused.
func deterministic(modules map[string]*ast.Module) bool {
	ok := true
	check := func(op string) {
		if bi := ast.BuiltinMap[op]; bi != nil && bi.Nondeterministic {
			ok = false
		}
	}
	for _, m := range modules {
		ast.NewGenericVisitor(func(x any) bool {
			switch x := x.(type) {
			case *ast.Expr: // f(x, y) in a body
				if x.IsCall() {
					check(x.Operator().String())
				}
			case ast.Call: // f(x) inside a term, a rule's head say
				check(x[0].String())
			}
			return !ok
		}).Walk(m)
	}
	return ok
}

// eventCache holds the event policy's answers, up to a bound, by the parts
// of the event the policy reads (paths; nil: all of it). An SLS event
// differs from batch to batch (its tags carry the receive time) while the
// policy reads only its logstore, say.
type eventCache struct {
	mu      sync.Mutex
	answers map[string][]Source
	paths   [][]ast.Value
}

const eventCacheSize = 4096

func (c *eventCache) get(key string) ([]Source, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	srcs, ok := c.answers[key]
	return slices.Clone(srcs), ok
}

func (c *eventCache) put(key string, srcs []Source) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.answers) >= eventCacheSize {
		clear(c.answers) // GCS events are each new: start over rather than track age
	}
	c.answers[key] = slices.Clone(srcs)
}

// key is what the policy's answer for event depends on: the values at
// paths, else the whole event. ok is false when the event is not JSON the
// way OPA would read it (the policy then says so; nothing is kept).
func (c *eventCache) key(parsers *fastjson.ParserPool, event []byte) (string, bool) {
	if c == nil {
		return "", false
	}
	if c.paths == nil {
		return string(event), true
	}
	p := parsers.Get()
	defer parsers.Put(p)
	root, err := p.ParseBytes(event)
	if err != nil || !astjson.Plain(root) {
		return "", false
	}
	var key []byte
	for _, path := range c.paths {
		j := root
		for _, step := range path {
			if j = astjson.Child(j, step); j == nil {
				break
			}
		}
		if j == nil {
			key = append(key, '-') // undefined
		} else {
			key = j.MarshalTo(append(key, '='))
		}
		key = append(key, '\n')
	}
	return string(key), true
}

// eventInputPaths lists the paths into input that the event policy reads
// (input.logstore, input.data.name): its answer depends on nothing else.
// nil: the policy reads input as a whole or by a computed key, reads other
// packages (which may read input) or rebinds input with `with`; then the
// whole event is the key.
func eventInputPaths(modules map[string]*ast.Module) [][]ast.Value {
	var paths [][]ast.Value
	whole := false
	bareInputs, inputRefs := 0, 0
	for _, m := range modules {
		if !m.Package.Path.Equal(ast.MustParseRef("data.event")) {
			continue
		}
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			whole = whole || len(e.With) > 0
			return false
		})
		ast.WalkVars(m, func(v ast.Var) bool {
			if v.Equal(ast.InputRootDocument.Value) {
				bareInputs++
			}
			return false
		})
		ast.WalkRefs(m, func(r ast.Ref) bool {
			switch {
			case r[0].Equal(ast.InputRootDocument):
				inputRefs++
				var path []ast.Value
				for _, t := range r[1:] {
					switch t.Value.(type) {
					case ast.String, ast.Number:
						path = append(path, t.Value)
						continue
					}
					break
				}
				if len(path) == 0 {
					whole = true
				}
				paths = append(paths, path)
			case r[0].Equal(ast.DefaultRootDocument) && !r.HasPrefix(ast.MustParseRef("data.event")):
				whole = true
			}
			return false
		})
	}
	if whole || bareInputs != inputRefs || len(paths) == 0 {
		return nil
	}
	return paths
}

func hasRule(m *ast.Module, name string) bool {
	for _, r := range m.Rules {
		if r.Head.Name.String() == name || (len(r.Head.Reference) > 0 && r.Head.Reference[0].Value.String() == name) {
			return true
		}
	}
	return false
}

// query compiles `__result__ = <ref>` once; evaluations run it through
// topdown directly, so results stay Rego values (no round trip through Go).
func (s *policySet) query(_ context.Context, ref string) (ast.Body, error) {
	body, err := ast.ParseBody(resultVar + " = " + ref)
	if err != nil {
		return nil, err
	}
	compiled, err := s.compiler.QueryCompiler().Compile(body)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", ref, explain(err))
	}
	return compiled, nil
}

const resultVar = "__result__"

// errList is a compile error list, one problem per line.
func explain(err error) error {
	var errs ast.Errors
	if errors.As(err, &errs) {
		lines := make([]string, 0, len(errs))
		for _, e := range errs {
			lines = append(lines, describe(e))
		}
		return errors.New(strings.Join(lines, "\n"))
	}
	return err
}
