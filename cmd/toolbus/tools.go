package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/registry"
)

func newToolsCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tools [server]",
		Short: "list the tool catalog, or approve a changed tool",
		Long: `List the tool catalog: server, tool, health (strict | non_strict_only | invalid)
and description; --json prints the full entries (schemas, annotations,
reasons, hash).

The catalog is the KV bucket toolbus_catalog (key <server>.<tool>, names
escaped); any NATS client can read it: nats kv get toolbus_catalog <server>.<tool>`,
		Example: `  toolbus tools
  toolbus tools demo --json
  toolbus tools approve demo add`,
		Args: wantArgs(0, 1, "at most one server name"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			var server string
			if len(pos) == 1 {
				server = pos[0]
			}
			reg, err := a.openRegistry(cmd, "toolbus tools")
			if err != nil {
				return err
			}
			defer reg.Close()
			es, err := reg.Tools(ctx, server)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, es)
			}
			if len(es) == 0 {
				if server != "" {
					if _, err := reg.Get(ctx, server); errors.Is(err, registry.ErrNotFound) {
						return fmt.Errorf("no server %q is registered (toolbus servers list)", server)
					}
					if st, err := reg.Status(ctx, server); err == nil && !st.OK && st.ErrorClass != "" {
						return fmt.Errorf("no tools for %s: last sync failed (%s): %s", server, st.ErrorClass, st.Message)
					}
					fmt.Fprintf(out, "no tools for %s (toolbus servers list; toolbus sync %s)\n", server, server)
					return nil
				}
				fmt.Fprintln(out, "the catalog is empty (toolbus servers add, then toolbus sync)")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVER\tTOOL\tHEALTH\tDESCRIPTION")
			for _, e := range es {
				health := string(e.Health)
				switch {
				case e.Held:
					health += " (held)"
				case e.Changed:
					health += " (changed)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Server, e.Tool, health, oneLine(e.Description, 70))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the catalog entries as JSON")
	cmd.AddCommand(newToolsApproveCmd(a))
	return cmd
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func newToolsApproveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "approve <server> <tool>",
		Short:   "approve a tool held since its definition changed (sync.hold_changed)",
		Example: `  toolbus tools approve search query`,
		Args:    wantArgs(2, 2, "<server> <tool>"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			reg, err := a.openRegistry(cmd, "toolbus tools approve")
			if err != nil {
				return err
			}
			defer reg.Close()
			if err := reg.Approve(cmd.Context(), pos[0], pos[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved %s/%s: its current definition is the approved one\n", pos[0], pos[1])
			return nil
		},
	}
}
