package main

import (
	"errors"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/catalogsync"
	"github.com/toolbus-dev/toolbus/internal/registry"
)

func newSyncCmd(a *app) *cobra.Command {
	var (
		hold, queue bool
		level       string
	)
	cmd := &cobra.Command{
		Use:   "sync [server]",
		Short: "list a server's tools (or every server's) into the catalog and print the diff",
		Long: `List a server's tools (or every server's) into the catalog and print the diff.

Runs the sync in this process: stdio servers start here, and env: secrets are
read from this environment. --queue instead asks the running sync replicas.`,
		Example: `  toolbus sync search          # list search's tools again now and print the diff
  toolbus sync                 # every server
  toolbus sync --queue search  # let the running replicas do it`,
		Args: wantArgs(0, 1, "at most one server name"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			if err := checkLogLevel(level); err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			var server string
			if len(pos) == 1 {
				server = pos[0]
			}
			reg, err := a.openRegistry(cmd, "toolbus sync", registry.WithoutResyncOnPut())
			if err != nil {
				return err
			}
			defer reg.Close()
			if queue {
				if server != "" {
					if _, err := reg.Get(ctx, server); errors.Is(err, registry.ErrNotFound) {
						return fmt.Errorf("no server %q is registered (toolbus servers list)", server)
					}
				}
				if err := registry.RequestResync(ctx, reg.js, server); err != nil {
					return err
				}
				fmt.Fprintln(out, "sync queued")
				return nil
			}
			s := catalogsync.New(reg.js, reg.Registry, catalogsync.Config{HoldChanged: hold}, catalogsync.WithLogger(newLogger(cmd.ErrOrStderr(), level)))
			if server != "" {
				d, err := s.SyncServer(ctx, server)
				if err != nil {
					if errors.Is(err, registry.ErrNotFound) {
						return fmt.Errorf("no server %q is registered (toolbus servers list)", server)
					}
					return err
				}
				printDiff(out, d)
				return nil
			}
			diffs, err := s.SyncAll(ctx)
			names := make([]string, 0, len(diffs))
			for n := range diffs {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				printDiff(out, diffs[n])
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&hold, "hold-changed", false, "hold tools whose definition changed until 'toolbus tools approve' (as sync.hold_changed in toolbus.yaml)")
	fs.BoolVar(&queue, "queue", false, "queue the sync for the running replicas instead of running it here")
	fs.StringVar(&level, "log-level", "warn", "debug, info, warn or error")
	return cmd
}
