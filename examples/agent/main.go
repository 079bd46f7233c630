// Command agent is the smallest toolbus agent: it waits for its wake-ups
// (the scheduler's, webhooks routed to it), calls a tool through the bus on
// each, prints the answer and acknowledges the wake-up. Wake-ups published
// while it was offline are delivered when it starts, each once, in order.
//
//	NATS_URL=nats://127.0.0.1:4222 go run ./examples/agent --agent planner
//	toolbus schedules add tick --spec "@every 10s" --kind wake --agent planner
//
// A wake-up whose tool call fails is not acknowledged: it is delivered again.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/client"
)

func main() {
	agent := flag.String("agent", os.Getenv("TOOLBUS_AGENT"), "the agent to act as (default: the NATS user, else \"default\")")
	server := flag.String("server", "demo", "the MCP server to call on each wake-up")
	tool := flag.String("tool", "echo", "the tool to call; it gets {\"message\": <the wake-up's body>}")
	count := flag.Int("count", 0, "exit after this many wake-ups (0: run until interrupted)")
	flag.Parse()

	url := os.Getenv("NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	opts := []nats.Option{nats.Name("toolbus example agent"), nats.MaxReconnects(-1)}
	if *agent != "" {
		opts = append(opts, nats.CustomInboxPrefix("_INBOX."+*agent)) // as nats.conf grants an agent
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		fail(err)
	}
	defer nc.Close()
	var copts []client.Option
	if *agent != "" {
		copts = append(copts, client.WithAgent(*agent))
	}
	c, err := client.New(nc, copts...)
	if err != nil {
		fail(err)
	}
	defer c.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("agent %s waiting for wake-ups\n", c.Agent())
	seen := 0
	err = c.Wakeups(ctx, func(ctx context.Context, w client.Wakeup) error {
		args, _ := json.Marshal(map[string]string{"message": string(w.Data)})
		res, err := c.Call(ctx, *server, *tool, json.RawMessage(args), client.WithTimeout(30*time.Second))
		if err != nil {
			return err // not acknowledged: delivered again
		}
		if err := res.Err(); err != nil {
			return err
		}
		fmt.Printf("woke (%s, event %d, delivery %d): %s/%s answered %s\n", w.Subject, w.Seq, w.Delivered, *server, *tool, res.Result)
		if seen++; *count > 0 && seen >= *count {
			stop()
		}
		return nil
	})
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "agent:", err)
	os.Exit(1)
}
