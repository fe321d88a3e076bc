package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the SLS stand-in lands.
func newEmulateSLSCmd() *cobra.Command {
	return &cobra.Command{Use: "sls", RunE: func(*cobra.Command, []string) error { return errors.New("not built yet") }}
}
