package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/subjects"
)

func newAgentsCmd(a *app) *cobra.Command {
	return group(&cobra.Command{
		Use:   "agents <command>",
		Short: "prepare agents' durable wake-up consumers; list them with what waits",
		Long: `An agent receives its wake-ups (agent.wake.<agent>: the scheduler's, webhooks
routed to it) through a durable consumer on EVENTS, wake-<agent>, so the ones
published while it was offline wait for it (client.Wakeups in Go). The
scheduler and the bridge create it at their first wake-up for the agent; add
creates it now, so nothing published before then is missed either. With NATS
authentication this needs an admin; the agent only reads its own.`,
		Example: `  toolbus agents add planner reporter
  toolbus agents list`,
	}, newAgentsAddCmd(a), newAgentsListCmd(a))
}

func newAgentsAddCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "add <agent>...",
		Short:   "create the agents' wake-up consumers now",
		Example: `  toolbus agents add planner`,
		Args:    wantArgs(1, -1, "at least one agent id"),
		RunE: func(cmd *cobra.Command, agents []string) error {
			nc, js, err := a.connect("toolbus agents", newLogger(cmd.ErrOrStderr(), "warn"))
			if err != nil {
				return err
			}
			defer nc.Close()
			for _, ag := range agents {
				if err := broker.EnsureWakeConsumer(cmd.Context(), js, ag); err != nil {
					return fmt.Errorf("agent %q: %w", ag, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "agent %s: wake-ups wait in %s on %s\n", ag, subjects.WakeConsumer(ag), subjects.StreamEvents)
			}
			return nil
		},
	}
}

func newAgentsListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "list the agents with wake-up consumers: wake-ups waiting and unacknowledged",
		Example: `  toolbus agents list --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			nc, js, err := a.connect("toolbus agents", newLogger(cmd.ErrOrStderr(), "warn"))
			if err != nil {
				return err
			}
			defer nc.Close()
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
				if ag, ok := strings.CutPrefix(info.Name, subjects.WakeConsumer("")); ok {
					rows = append(rows, agentRow{Agent: ag, Pending: info.NumPending, Unacked: info.NumAckPending})
				}
			}
			if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
				return err
			}
			if asJSON {
				return printJSON(out, rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AGENT\tWAITING\tUNACKED")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", r.Agent, r.Pending, r.Unacked)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
