package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildInfo is what the binary knows of its build (runtime/debug.ReadBuildInfo).
type buildInfo struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Revision string `json:"vcs_revision,omitempty"`
	Time     string `json:"vcs_time,omitempty"`
	Modified bool   `json:"vcs_modified,omitempty"`
	Go       string `json:"go"`
}

func readBuildInfo() buildInfo { return buildInfoOf(debug.ReadBuildInfo()) }

func buildInfoOf(bi *debug.BuildInfo, ok bool) buildInfo {
	b := buildInfo{Module: "github.com/toolbus-dev/toolbus", Version: "(unknown)"}
	if !ok {
		return b
	}
	b.Go = bi.GoVersion
	if bi.Main.Path != "" {
		b.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// versionText is what --version and `toolbus version` print.
func versionText() string { return formatVersion(readBuildInfo()) }

func formatVersion(b buildInfo) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "toolbus %s (%s)", b.Version, b.Module)
	if b.Revision != "" {
		fmt.Fprintf(&sb, "\nrevision %s", b.Revision)
		if b.Modified {
			sb.WriteString(" (modified)")
		}
	}
	if b.Time != "" {
		fmt.Fprintf(&sb, "\ncommitted %s", b.Time)
	}
	fmt.Fprintf(&sb, "\nbuilt with %s", b.Go)
	return sb.String()
}

func newVersionCmd(*app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print the module version and the VCS revision the binary was built from",
		Example: `  toolbus version
  toolbus version --json
  toolbus --version`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return printJSON(cmd.OutOrStdout(), readBuildInfo())
			}
			fmt.Fprintln(cmd.OutOrStdout(), versionText())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
