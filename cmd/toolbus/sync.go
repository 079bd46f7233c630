package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/toolbus-dev/toolbus/internal/catalogsync"
	"github.com/toolbus-dev/toolbus/internal/registry"
)

func init() {
	c := &command{
		name:    "sync",
		summary: "list a server's tools (or every server's) into the catalog and print the diff",
		usage: `toolbus sync [flags] [server]

Runs the sync in this process: stdio servers start here, and env: secrets are
read from this environment. --queue instead asks the running sync replicas.`,
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		conn := addConnFlags(fs)
		hold := fs.Bool("hold-changed", false, "hold tools whose definition changed until 'toolbus tools approve' (as sync.hold_changed in toolbus.yaml)")
		queue := fs.Bool("queue", false, "queue the sync for the running replicas instead of running it here")
		level := fs.String("log-level", "warn", "log level: debug, info, warn, error")
		if err := parseInterspersed(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 1 {
			return usagef("want at most one server name")
		}
		server := fs.Arg(0)
		reg, err := openRegistry(ctx, conn, "toolbus sync", registry.WithoutResyncOnPut())
		if err != nil {
			return err
		}
		defer reg.Close()
		if *queue {
			if server != "" {
				if _, err := reg.Get(ctx, server); errors.Is(err, registry.ErrNotFound) {
					return fmt.Errorf("no server %q is registered (toolbus servers list)", server)
				}
			}
			if err := registry.RequestResync(ctx, reg.js, server); err != nil {
				return err
			}
			fmt.Println("sync queued")
			return nil
		}
		s := catalogsync.New(reg.js, reg.Registry, catalogsync.Config{HoldChanged: *hold}, catalogsync.WithLogger(newLogger(*level)))
		if server != "" {
			d, err := s.SyncServer(ctx, server)
			if err != nil {
				if errors.Is(err, registry.ErrNotFound) {
					return fmt.Errorf("no server %q is registered (toolbus servers list)", server)
				}
				return err
			}
			printDiff(os.Stdout, d)
			return nil
		}
		diffs, err := s.SyncAll(ctx)
		names := make([]string, 0, len(diffs))
		for n := range diffs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			printDiff(os.Stdout, diffs[n])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return exitError{code: 1}
		}
		return nil
	}
	register(c)
}
