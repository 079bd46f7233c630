package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/worker"
)

func newDLQCmd(a *app) *cobra.Command {
	return group(&cobra.Command{
		Use:   "dlq <command>",
		Short: "dead letters: list, show, replay or purge calls that could not be delivered",
		Long: `Dead letters: calls that exhausted their deliveries (or could not be answered),
kept in TOOL_DEAD with the reason. The caller heard an error (dead_letter).`,
		Example: `  toolbus dlq list
  toolbus dlq show 12
  toolbus dlq replay 12 13
  toolbus dlq purge`,
	}, newDLQListCmd(a), newDLQShowCmd(a), newDLQReplayCmd(a), newDLQPurgeCmd(a))
}

// dlqCmd is a dead-letter subcommand: connected, with its sequence
// arguments parsed.
func dlqCmd(a *app, cmd *cobra.Command, min int, run func(cmd *cobra.Command, js jetstream.JetStream, seqs []uint64) error) *cobra.Command {
	cmd.Args = func(_ *cobra.Command, args []string) error {
		if len(args) < min {
			return usagef("%s wants a dead letter's sequence number (see `toolbus dlq list`)", cmd.Name())
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var seqs []uint64
		for _, s := range args {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil || n == 0 {
				return usagef("%q is not a sequence number", s)
			}
			seqs = append(seqs, n)
		}
		nc, js, err := a.connect("toolbus-dlq", zerolog.Nop())
		if err != nil {
			return err
		}
		defer nc.Close()
		return run(cmd, js, seqs)
	}
	return cmd
}

func newDLQListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := dlqCmd(a, &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "list dead letters: sequence, time, server, tool, call id, reason",
		Example: `  toolbus dlq list --json`,
	}, 0, func(cmd *cobra.Command, js jetstream.JetStream, _ []uint64) error {
		out := cmd.OutOrStdout()
		dls, err := worker.ListDeadLetters(cmd.Context(), js, 0)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(out, dls)
		}
		if len(dls) == 0 {
			fmt.Fprintln(out, "no dead letters")
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tSERVER\tTOOL\tCALL ID\tREASON")
		for _, d := range dls {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Time.Local().Format("2006-01-02 15:04:05"), d.Server, d.Tool, d.CallID, truncate(d.Reason, 70))
		}
		return tw.Flush()
	})
	cmd.Args = noArgs
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newDLQShowCmd(a *app) *cobra.Command {
	return dlqCmd(a, &cobra.Command{
		Use:     "show <seq>...",
		Short:   "print dead letters as JSON: the call, its headers and the reason",
		Example: `  toolbus dlq show 12`,
	}, 1, func(cmd *cobra.Command, js jetstream.JetStream, seqs []uint64) error {
		for _, s := range seqs {
			d, err := worker.GetDeadLetter(cmd.Context(), js, s)
			if err != nil {
				return err
			}
			if err := printJSON(cmd.OutOrStdout(), d); err != nil {
				return err
			}
		}
		return nil
	})
}

func newDLQReplayCmd(a *app) *cobra.Command {
	return dlqCmd(a, &cobra.Command{
		Use:     "replay <seq>...",
		Short:   "publish dead letters again as new calls",
		Example: `  toolbus dlq replay 12 13`,
	}, 1, func(cmd *cobra.Command, js jetstream.JetStream, seqs []uint64) error {
		for _, s := range seqs {
			id, err := worker.ReplayDeadLetter(cmd.Context(), js, s)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dead letter %d replayed as call %s (result on tool.result.%s)\n", s, id, id)
		}
		return nil
	})
}

func newDLQPurgeCmd(a *app) *cobra.Command {
	return dlqCmd(a, &cobra.Command{
		Use:   "purge [<seq>...]",
		Short: "delete the given dead letters, or all of them",
		Example: `  toolbus dlq purge 12
  toolbus dlq purge            # all`,
	}, 0, func(cmd *cobra.Command, js jetstream.JetStream, seqs []uint64) error {
		if len(seqs) == 0 {
			return worker.PurgeDeadLetters(cmd.Context(), js, 0)
		}
		for _, s := range seqs {
			if err := worker.PurgeDeadLetters(cmd.Context(), js, s); err != nil {
				return err
			}
		}
		return nil
	})
}
