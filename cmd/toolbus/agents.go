package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/subjects"
)

func init() {
	c := &command{
		name:    "agents",
		summary: "prepare agents' durable wake-up consumers; list them with what waits",
		usage: `toolbus agents add <agent>...
       toolbus agents list [--json]

An agent receives its wake-ups (agent.wake.<agent>: the scheduler's, webhooks
routed to it) through a durable consumer on EVENTS, wake-<agent>, so the ones
published while it was offline wait for it (client.Wakeups in Go). The
scheduler and the bridge create it at their first wake-up for the agent; add
creates it now, so nothing published before then is missed either. With NATS
authentication this needs an admin; the agent only reads its own.`,
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		conn := addConnFlags(fs)
		asJSON := fs.Bool("json", false, "list: print JSON")
		if err := parseInterspersed(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			return usagef("want add or list")
		}
		nc, js, err := conn.connect("toolbus agents", newLogger("warn"))
		if err != nil {
			return err
		}
		defer nc.Close()
		switch fs.Arg(0) {
		case "add":
			if fs.NArg() < 2 {
				return usagef("want at least one agent id")
			}
			for _, a := range fs.Args()[1:] {
				if err := broker.EnsureWakeConsumer(ctx, js, a); err != nil {
					return fmt.Errorf("agent %q: %w", a, err)
				}
				fmt.Printf("agent %s: wake-ups wait in %s on %s\n", a, subjects.WakeConsumer(a), subjects.StreamEvents)
			}
			return nil
		case "list":
			type agentRow struct {
				Agent   string `json:"agent"`
				Pending uint64 `json:"pending"`
				Unacked int    `json:"unacked"`
			}
			rows := []agentRow{}
			events, err := js.Stream(ctx, subjects.StreamEvents)
			if err != nil {
				return fmt.Errorf("stream %s: %w", subjects.StreamEvents, err)
			}
			lister := events.ListConsumers(ctx)
			for info := range lister.Info() {
				if a, ok := strings.CutPrefix(info.Name, subjects.WakeConsumer("")); ok {
					rows = append(rows, agentRow{Agent: a, Pending: info.NumPending, Unacked: info.NumAckPending})
				}
			}
			if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
				return err
			}
			if *asJSON {
				return printJSON(rows)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AGENT\tWAITING\tUNACKED")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", r.Agent, r.Pending, r.Unacked)
			}
			return tw.Flush()
		}
		return usagef("unknown subcommand %q: want add or list", fs.Arg(0))
	}
	register(c)
}
