package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/status"
)

func init() {
	c := &command{
		name:    "status",
		summary: "the fleet at a glance: workers, calls queued/in flight/awaiting ack, dead letters, servers and breakers",
		usage:   "toolbus status [--json] [--watch [--interval 2s]]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		conn := addConnFlags(fs)
		asJSON := fs.Bool("json", false, "print JSON")
		watch := fs.Bool("watch", false, "refresh until interrupted")
		interval := fs.Duration("interval", 2*time.Second, "refresh interval with --watch")
		wait := fs.Duration("discover-wait", time.Second, "how long to wait for workers to answer")
		pos, err := parseArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("unexpected arguments %q", pos)
		}
		nc, js, err := conn.connect("toolbus-status", zerolog.Nop())
		if err != nil {
			return err
		}
		defer nc.Close()
		gather := func(ctx context.Context) *status.Report {
			return status.Gather(ctx, nc, js, status.Options{DiscoverWait: *wait})
		}
		render := status.WriteText
		if *asJSON {
			render = status.WriteJSON
		}
		if *watch {
			clear := ""
			if !*asJSON && isTerminal(os.Stdout) {
				clear = "\033[H\033[2J"
			}
			return status.Watch(ctx, os.Stdout, *interval, clear, gather, render)
		}
		return render(io.Writer(os.Stdout), gather(ctx))
	}
	register(c)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
