// Command sluice ships security logs from cloud log stores to the SIEM and
// the warehouse, buffering every record durably on the way. The commands
// are in cmd/; see docs/DESIGN.md for the shape of the code.
package main

import (
	"embed"
	"fmt"
	"io/fs"
	"os"

	"github.com/sluicehq/sluice/cmd"
)

// The policies `sluice dev` starts with: the same ones the tests use.
//
//go:embed testdata/policies
var devPolicies embed.FS

func main() {
	policies, err := fs.Sub(devPolicies, "testdata/policies")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
	os.Exit(cmd.Main(policies))
}
