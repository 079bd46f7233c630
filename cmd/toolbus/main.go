// Command toolbus runs MCP tool calls as durable jobs on NATS JetStream.
//
// It wires: flags and config in, services constructed, Run(ctx), signals.
// Each subcommand lives in its own file as a newXxxCmd, registered in the
// commands list of root.go.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signalContext()
	code := execute(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContext is cancelled by the first SIGINT/SIGTERM (graceful: services
// drain, a waiting call is cancelled); a second one exits at once.
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
