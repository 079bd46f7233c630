// Command toolbus runs MCP tool calls as durable jobs on NATS JetStream.
//
// It wires: flags and config in, services constructed, Run(ctx), signals.
// Each subcommand lives in its own file and registers itself in init.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one `toolbus <name>` subcommand.
type command struct {
	name    string
	summary string // one line for `toolbus --help`
	usage   string // "toolbus name [flags] args", shown by `toolbus name --help`
	// run parses args with its own FlagSet (use newFlags) and does the work.
	run func(ctx context.Context, args []string) error
	// hidden commands are left out of `toolbus --help` (internal helpers).
	hidden bool
}

var commands = map[string]*command{}

// register adds a subcommand; called from init in each command's file.
func register(c *command) { commands[c.name] = c }

// errUsage marks a usage error: printed with a hint, exit status 2.
var errUsage = errors.New("usage")

// exitError carries a specific exit status (e.g. `call` on an error result).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// newFlags returns a FlagSet whose --help prints the command's usage,
// summary and flags.
func newFlags(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\nUsage: %s\n", c.summary, c.usage)
		var has bool
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func usage(w io.Writer) {
	fmt.Fprint(w, `toolbus runs MCP tool calls as durable jobs on NATS JetStream.

Usage: toolbus <command> [flags] [args]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		if commands[n].hidden {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Run 'toolbus <command> --help' for a command's flags.
Clients reach NATS at $NATS_URL, else nats://127.0.0.1:4222 (toolbus serve's embedded server).
`)
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		// No command is a usage error: scripts must not take it for success.
		usage(os.Stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "toolbus: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	err := c.run(ctx, args[1:])
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "toolbus %s: %v\nRun 'toolbus %s --help' for usage.\n", c.name, strings.TrimPrefix(err.Error(), "usage: "), c.name)
		return 2
	default:
		fmt.Fprintf(os.Stderr, "toolbus %s: %v\n", c.name, err)
		return 1
	}
}

// signalContext is cancelled by the first SIGINT/SIGTERM (graceful: services
// drain); a second one exits at once.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-ch
		cancel(fmt.Errorf("received %v", s))
		s = <-ch
		fmt.Fprintf(os.Stderr, "toolbus: second %v, exiting now\n", s)
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel(context.Canceled) }
}

// usagef returns a usage error.
func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// parseArgs parses flags wherever they appear among the positional
// arguments ("call demo add '{}' --json" works as well as flags first), and
// returns the positional ones. "--" ends flag parsing.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
