package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// commands are toolbus's subcommands, each built by the newXxxCmd of its own
// file. Adding a command is one line here.
var commands = []func(*app) *cobra.Command{
	newServeCmd,
	newWorkerCmd,
	newCallCmd,
	newResultCmd,
	newToolsCmd,
	newServersCmd,
	newSyncCmd,
	newSchedulesCmd,
	newAgentsCmd,
	newBridgeCmd,
	newDLQCmd,
	newStatusCmd,
	newDemoCmd,
	newGatewayCmd,
	newMCPCmd,
	newBenchCmd,
	newBenchLoadgenCmd,
	newVersionCmd,
}

// app is what every command shares: the root's NATS connection flags and the
// environment that gives flags their defaults.
type app struct {
	getenv func(string) string
	conn   connFlags
}

// execute runs toolbus with args (without the program name) and returns the
// exit status: 0 done, 1 failed, 2 a usage error, or what a command chose
// (130 for an interrupted call). Every command writes to out and errOut and
// reads in, so tests run commands in process; ctx ends at the first
// SIGINT/SIGTERM in the real binary.
func execute(ctx context.Context, args []string, getenv func(string) string, in io.Reader, out, errOut io.Writer) int {
	root := newRootCmd(&app{getenv: getenv}, in, out, errOut)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return exitCode(cmd, err, errOut)
}

// newRootCmd builds the command tree, reading in and writing to out and
// errOut.
func newRootCmd(a *app, in io.Reader, out, errOut io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "toolbus <command>",
		Short: "run MCP tool calls as durable jobs on NATS JetStream",
		Long: `toolbus runs MCP tool calls as durable jobs on NATS JetStream.

Clients reach NATS at --nats-url (env NATS_URL), else a natscli context
(--context NAME, env NATS_CONTEXT), else nats://127.0.0.1:4222: the embedded
server of 'toolbus serve'.`,
		Example: `  toolbus serve                                   # everything in one process, the demo server registered
  toolbus call demo add '{"a":2,"b":3}'           # prints 5
  toolbus --context prod tools                    # the catalog, on the NATS of natscli context "prod"
  source <(toolbus completion bash)               # shell completion`,
		Version:       versionText(),
		SilenceErrors: true,
		SilenceUsage:  true,
		// Bare `toolbus` is a usage error: scripts must not take it for success.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q%s", args[0], suggest(cmd, args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return exitError{code: 2}
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd, a.getenv)
		},
	}
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %w", errUsage, err)
	})
	a.conn.register(root.PersistentFlags())
	for _, newCmd := range commands {
		root.AddCommand(newCmd(a))
	}
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			groupRunE(c)
		}
	}
	return root
}

// usageTemplate is cobra's, with one usage line per command (groups are
// runnable only to refuse a missing or unknown subcommand) and the NATS
// flags named for what they are.
const usageTemplate = `Usage:
  {{.UseLine}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags (the NATS connection: flag, else env, else --context, else default):
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Run '{{.CommandPath}} <command> --help' for a command's flags.{{end}}
`

// errUsage marks a usage error: printed with a hint, exit status 2.
var errUsage = errors.New("usage")

// usagef returns a usage error.
func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// exitError ends a command with a status and nothing more to print (the
// command printed what happened).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// exitCode prints err for a person and turns it into an exit status.
func exitCode(cmd *cobra.Command, err error, errOut io.Writer) int {
	var ee exitError
	path := "toolbus"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errUsage):
		fmt.Fprintf(errOut, "%s: %s\nRun '%s --help' for usage.\n", path, strings.TrimPrefix(err.Error(), "usage: "), path)
		return 2
	default:
		fmt.Fprintf(errOut, "%s: %v\n", path, err)
		return 1
	}
}

// suggest returns ", did you mean ...?" for a mistyped subcommand of cmd.
func suggest(cmd *cobra.Command, name string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		return fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
	}
	return ""
}

// group makes cmd a group of subcommands: bare, or with an unknown
// subcommand, it is a usage error naming the subcommands.
func group(cmd *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	cmd.AddCommand(subs...)
	return groupRunE(cmd)
}

func groupRunE(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		want := strings.Join(names, ", ")
		if len(args) == 0 {
			return usagef("want a subcommand: %s", want)
		}
		return usagef("unknown subcommand %q%s: want %s", args[0], suggest(cmd, args[0]), want)
	}
	return cmd
}

// noArgs refuses positional arguments.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	return nil
}

// wantArgs wants between min and max positional arguments (max < 0: any
// number), described by want in the error.
func wantArgs(min, max int, want string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return usagef("want %s, got %d argument(s)", want, len(args))
		}
		return nil
	}
}
