// Command mcp-demo runs toolbus's demo MCP server (package demo) over stdio,
// SSE or streamable HTTP. It is the peer toolbus's own tests and benchmarks
// call, and a server to try toolbus with.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/toolbus-dev/toolbus/internal/demo"
)

const usage = `mcp-demo: toolbus's demo MCP server.

Usage:
  mcp-demo [--transport stdio|sse|http] [--addr HOST:PORT] [--faults [--exec-log FILE]]

Tools: echo, add, sleep (with progress), fail (tool error), whoami, and
echo_plain and sleep_plain (the same without annotations).

--faults adds fault-injection tools, for tests only: crash (exits the process
with status 3), kill_parent (SIGKILLs the process that started this one, e.g.
a toolbus worker, then exits with status 4), destroy (poses as destructive),
count and executions (execution counters).

Transports:
  stdio  JSON-RPC on stdin/stdout (default); stdout carries only the protocol
  sse    HTTP+SSE: GET http://ADDR/sse, POST http://ADDR/message
  http   streamable HTTP at http://ADDR/mcp

Flags:
`

func main() {
	fs := flag.NewFlagSet("mcp-demo", flag.ContinueOnError)
	transport := fs.String("transport", demo.TransportStdio, "stdio, sse or http (streamable HTTP)")
	addr := fs.String("addr", demo.DefaultAddr, "listen address for sse and http")
	faults := fs.Bool("faults", false, "also offer the fault-injection tools crash, kill_parent, destroy, count and executions (for tests only)")
	execLog := fs.String("exec-log", "", "append one line \"<tool> <key>\" per count/destroy execution to this file (needs --faults)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mcp-demo: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		os.Exit(2)
	}
	if *execLog != "" && !*faults {
		fmt.Fprintln(os.Stderr, "mcp-demo: --exec-log records count and destroy, which only --faults offers")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := demo.Run(ctx, demo.RunOptions{
		Transport: *transport,
		Addr:      *addr,
		Options:   demo.Options{Faults: *faults, ExecLog: *execLog},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "mcp-demo: %v\n", err)
		os.Exit(1)
	}
}
