package main

import (
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/demo"
)

func newDemoCmd(*app) *cobra.Command {
	o := demo.RunOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "run the demo MCP server (echo, add, sleep, fail, whoami) over stdio, SSE or streamable HTTP",
		Long: `Run the demo MCP server. Tools: echo, add, sleep (with progress), fail (a tool
error), whoami, and echo_plain and sleep_plain (the same without annotations).

--faults is for tests only: it adds crash (exits the server), kill_parent
(SIGKILLs the process that started the server: as a stdio server of toolbus
serve, that is serve and its embedded NATS), destroy (poses as destructive),
count and executions (execution counters). Never register a demo with
--faults where people call tools by hand.`,
		Example: `  toolbus demo                                    # over stdio, as an MCP client starts it
  toolbus demo --transport http --addr 127.0.0.1:7801   # streamable HTTP at /mcp`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.ExecLog != "" && !o.Faults {
				return usagef("--exec-log records count and destroy, which only --faults offers")
			}
			return demo.Run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Transport, "transport", demo.TransportStdio, "stdio, sse or http (streamable HTTP at /mcp)")
	fs.StringVar(&o.Addr, "addr", demo.DefaultAddr, "listen address for sse and http")
	fs.BoolVar(&o.Faults, "faults", false, "also offer the fault-injection tools crash, kill_parent, destroy, count and executions (for tests only)")
	fs.StringVar(&o.ExecLog, "exec-log", "", "append \"<tool> <key>\" per count/destroy execution to this file (needs --faults)")
	return cmd
}
