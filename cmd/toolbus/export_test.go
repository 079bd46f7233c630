package main

import (
	"os"

	"github.com/spf13/cobra"
)

// Execute is execute, for the in-process CLI tests of package main_test.
var Execute = execute

// Root returns the root command, for tests that walk every command.
func Root() *cobra.Command {
	return newRootCmd(&app{getenv: os.Getenv}, os.Stdin, os.Stdout, os.Stderr)
}
