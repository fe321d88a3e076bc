package plan

import (
	"fmt"
	"testing"
)

// sprintfStrings gives what fmt.Sprintf gives, or declines.
func FuzzSprintfStrings(f *testing.F) {
	f.Add("sls:%s", "10.0.0.7", "x")
	f.Add("%s-%s %% done", "a", "b")
	f.Add("%d%", "a", "")
	f.Fuzz(func(t *testing.T, format, a, b string) {
		for _, args := range [][]string{nil, {a}, {a, b}} {
			got, ok := sprintfStrings(format, args)
			if !ok {
				continue
			}
			anys := make([]any, len(args))
			for i, s := range args {
				anys[i] = s
			}
			if want := fmt.Sprintf(format, anys...); got != want {
				t.Fatalf("sprintfStrings(%q, %q) = %q, fmt.Sprintf gives %q", format, args, got, want)
			}
		}
	})
}
