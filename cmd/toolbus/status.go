package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/status"
)

func newStatusCmd(a *app) *cobra.Command {
	var asJSON, watch bool
	var interval, wait time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "the fleet at a glance: workers, calls queued/in flight/awaiting ack, dead letters, servers and breakers",
		Long: `The fleet at a glance: the workers that answer in the control service
(toolbus, as 'nats micro ls' lists it), calls queued, in flight and awaiting
their ack, dead letters, and each server's last sync and breakers.

What cannot be read (a bucket missing, no worker answering) is listed under
errors; the command still exits 0 with what it could read.`,
		Example: `  toolbus status
  toolbus status --json
  toolbus status --watch --interval 5s`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return usagef("--interval %s: want a positive duration", interval)
			}
			if wait <= 0 {
				return usagef("--discover-wait %s: want a positive duration", wait)
			}
			nc, js, err := a.connect("toolbus-status", zerolog.Nop())
			if err != nil {
				return err
			}
			defer nc.Close()
			gather := func(ctx context.Context) *status.Report {
				return status.Gather(ctx, nc, js, status.Options{DiscoverWait: wait})
			}
			render := status.WriteText
			if asJSON {
				render = status.WriteJSON
			}
			out := cmd.OutOrStdout()
			if watch {
				clear := ""
				if !asJSON && isTerminal(out) {
					clear = "\033[H\033[2J"
				}
				return status.Watch(cmd.Context(), out, interval, clear, gather, render)
			}
			return render(out, gather(cmd.Context()))
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.BoolVar(&watch, "watch", false, "refresh until interrupted")
	fs.DurationVar(&interval, "interval", 2*time.Second, "refresh interval with --watch")
	fs.DurationVar(&wait, "discover-wait", time.Second, "how long to wait for workers to answer")
	return cmd
}

// isTerminal reports whether w is a terminal (a screen to clear).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
