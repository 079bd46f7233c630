package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/toolbus-dev/toolbus/internal/registry"
)

func init() {
	c := &command{
		name:    "tools",
		summary: "list the tool catalog, or approve a changed tool",
		usage: `toolbus tools [server] [--json]
       toolbus tools approve <server> <tool>

The catalog is the KV bucket toolbus_catalog (key <server>.<tool>, names
escaped); any NATS client can read it: nats kv get toolbus_catalog <server>.<tool>`,
	}
	c.run = func(ctx context.Context, args []string) error {
		if len(args) > 0 && args[0] == "approve" {
			return toolsApprove(ctx, c, args[1:])
		}
		return toolsList(ctx, c, args)
	}
	register(c)
}

func toolsList(ctx context.Context, c *command, args []string) error {
	fs := newFlags(c)
	conn := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print the catalog entries as JSON")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("want at most one server name")
	}
	server := fs.Arg(0)
	reg, err := openRegistry(ctx, conn, "toolbus tools")
	if err != nil {
		return err
	}
	defer reg.Close()
	es, err := reg.Tools(ctx, server)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(es)
	}
	if len(es) == 0 {
		if server != "" {
			if _, err := reg.Get(ctx, server); errors.Is(err, registry.ErrNotFound) {
				return fmt.Errorf("no server %q is registered (toolbus servers list)", server)
			}
			if st, err := reg.Status(ctx, server); err == nil && !st.OK && st.ErrorClass != "" {
				return fmt.Errorf("no tools for %s: last sync failed (%s): %s", server, st.ErrorClass, st.Message)
			}
			fmt.Printf("no tools for %s (toolbus servers list; toolbus sync %s)\n", server, server)
			return nil
		}
		fmt.Println("the catalog is empty (toolbus servers add, then toolbus sync)")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
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
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func toolsApprove(ctx context.Context, c *command, args []string) error {
	fs := newFlags(c)
	conn := addConnFlags(fs)
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("want <server> <tool>")
	}
	reg, err := openRegistry(ctx, conn, "toolbus tools approve")
	if err != nil {
		return err
	}
	defer reg.Close()
	if err := reg.Approve(ctx, fs.Arg(0), fs.Arg(1)); err != nil {
		return err
	}
	fmt.Printf("approved %s/%s: its current definition is the approved one\n", fs.Arg(0), fs.Arg(1))
	return nil
}
