package main

import (
	"context"

	"toolbus/demo"
)

func init() {
	c := &command{
		name:    "demo",
		summary: "run the demo MCP server (echo, add, sleep, fail, ...) over stdio, SSE or streamable HTTP",
		usage:   "toolbus demo [--transport stdio|sse|http] [--addr 127.0.0.1:7801] [--exec-log FILE]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		o := demo.RunOptions{}
		fs.StringVar(&o.Transport, "transport", demo.TransportStdio, "stdio, sse or http (streamable HTTP at /mcp)")
		fs.StringVar(&o.Addr, "addr", demo.DefaultAddr, "listen address for sse and http")
		fs.StringVar(&o.ExecLog, "exec-log", "", "append \"<tool> <key>\" per count/destroy execution to this file")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("unexpected arguments %q", fs.Args())
		}
		return demo.Run(ctx, o)
	}
	register(c)
}
