package rego

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult counts a policy test run.
type TestResult struct {
	Passed, Failed, Errors int
}

// RunTests runs the test_ rules of a directory like `opa test`, under the
// same sandbox and syntax detection as the node, printing in opa's shape.
func RunTests(ctx context.Context, dir string, w io.Writer, verbose bool) (TestResult, error) {
	sources, data, _, err := readDir(dir)
	if err != nil {
		return TestResult{}, fmt.Errorf("policies %s: %w", dir, err)
	}
	modules := map[string]*ast.Module{}
	for name, src := range sources {
		m, err := parseModule(filepath.Join(dir, name), src)
		if err != nil {
			return TestResult{}, explain(err)
		}
		modules[filepath.Join(dir, name)] = m
	}
	compiler := newCompiler().WithEnablePrintStatements(true)
	runner := tester.NewRunner().SetCompiler(compiler).SetStore(inmem.NewFromObject(data)).CapturePrintOutput(true)
	ch, err := runner.Run(ctx, modules)
	if err != nil {
		return TestResult{}, explain(err)
	}
	var res TestResult
	replay := make(chan *tester.Result)
	done := make(chan error, 1)
	go func() { done <- tester.PrettyReporter{Output: w, Verbose: verbose, FailureLine: true}.Report(replay) }()
	for r := range ch {
		switch {
		case r.Error != nil:
			res.Errors++
		case r.Fail:
			res.Failed++
		default:
			res.Passed++
		}
		replay <- r
	}
	close(replay)
	if err := <-done; err != nil {
		return res, err
	}
	if res.Passed+res.Failed+res.Errors == 0 {
		return res, fmt.Errorf("policies %s: no test_ rules found", dir)
	}
	return res, nil
}
