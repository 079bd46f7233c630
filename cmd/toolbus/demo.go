package main

import (
	"context"

	"github.com/toolbus-dev/toolbus/internal/demo"
)

func init() {
	c := &command{
		name:    "demo",
		summary: "run the demo MCP server (echo, add, sleep, fail, whoami) over stdio, SSE or streamable HTTP",
		usage: `toolbus demo [--transport stdio|sse|http] [--addr 127.0.0.1:7801] [--faults [--exec-log FILE]]

Tools: echo, add, sleep (with progress), fail (a tool error), whoami.

--faults is for tests only: it adds crash (exits the server), kill_parent
(SIGKILLs the process that started the server: as a stdio server of toolbus
serve, that is serve and its embedded NATS), destroy (poses as destructive),
count and executions (execution counters). Never register a demo with
--faults where people call tools by hand.`,
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		o := demo.RunOptions{}
		fs.StringVar(&o.Transport, "transport", demo.TransportStdio, "stdio, sse or http (streamable HTTP at /mcp)")
		fs.StringVar(&o.Addr, "addr", demo.DefaultAddr, "listen address for sse and http")
		fs.BoolVar(&o.Faults, "faults", false, "also offer the fault-injection tools crash, kill_parent, destroy, count and executions (for tests only)")
		fs.StringVar(&o.ExecLog, "exec-log", "", "append \"<tool> <key>\" per count/destroy execution to this file (needs --faults)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("unexpected arguments %q", fs.Args())
		}
		if o.ExecLog != "" && !o.Faults {
			return usagef("--exec-log records count and destroy, which only --faults offers")
		}
		return demo.Run(ctx, o)
	}
	register(c)
}
