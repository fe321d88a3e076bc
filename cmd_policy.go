package main

import "github.com/spf13/cobra"

// Placeholder until the policy commands land.
func newPolicyCmd() *cobra.Command { return &cobra.Command{Use: "policy"} }
