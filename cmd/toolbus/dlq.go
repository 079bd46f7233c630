package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/worker"
)

func init() {
	c := &command{
		name:    "dlq",
		summary: "dead letters: list, show, replay or purge calls that could not be delivered",
		usage:   "toolbus dlq list [--json] | show <seq> | replay <seq>... | purge [<seq>]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		conn := addConnFlags(fs)
		asJSON := fs.Bool("json", false, "print JSON")
		pos, err := parseArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) == 0 {
			return usagef("want a subcommand: list, show, replay or purge")
		}
		nc, js, err := conn.connect("toolbus-dlq", zerolog.Nop())
		if err != nil {
			return err
		}
		defer nc.Close()
		seqs := func(min int) ([]uint64, error) {
			if len(pos)-1 < min {
				return nil, usagef("%s wants a dead letter's sequence number (see `toolbus dlq list`)", pos[0])
			}
			var out []uint64
			for _, a := range pos[1:] {
				n, err := strconv.ParseUint(a, 10, 64)
				if err != nil || n == 0 {
					return nil, usagef("%q is not a sequence number", a)
				}
				out = append(out, n)
			}
			return out, nil
		}
		switch pos[0] {
		case "list":
			dls, err := worker.ListDeadLetters(ctx, js, 0)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(dls)
			}
			if len(dls) == 0 {
				fmt.Println("no dead letters")
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tSERVER\tTOOL\tCALL ID\tREASON")
			for _, d := range dls {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Time.Local().Format("2006-01-02 15:04:05"), d.Server, d.Tool, d.CallID, truncate(d.Reason, 70))
			}
			return tw.Flush()
		case "show":
			ss, err := seqs(1)
			if err != nil {
				return err
			}
			for _, s := range ss {
				d, err := worker.GetDeadLetter(ctx, js, s)
				if err != nil {
					return err
				}
				if err := printJSON(d); err != nil {
					return err
				}
			}
			return nil
		case "replay":
			ss, err := seqs(1)
			if err != nil {
				return err
			}
			for _, s := range ss {
				id, err := worker.ReplayDeadLetter(ctx, js, s)
				if err != nil {
					return err
				}
				fmt.Printf("dead letter %d replayed as call %s (result on tool.result.%s)\n", s, id, id)
			}
			return nil
		case "purge":
			ss, err := seqs(0)
			if err != nil {
				return err
			}
			if len(ss) == 0 {
				return worker.PurgeDeadLetters(ctx, js, 0)
			}
			for _, s := range ss {
				if err := worker.PurgeDeadLetters(ctx, js, s); err != nil {
					return err
				}
			}
			return nil
		}
		return usagef("unknown subcommand %q: want list, show, replay or purge", pos[0])
	}
	register(c)
}
