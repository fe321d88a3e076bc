package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until the HEC stand-in lands.
func newEmulateHECCmd() *cobra.Command {
	return &cobra.Command{Use: "hec", RunE: func(*cobra.Command, []string) error { return errors.New("not built yet") }}
}
