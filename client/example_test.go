package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/subjects"
)

// An agent connects to NATS, makes one client, and calls tools through
// the bus: the call is stored in JetStream, a worker runs it against the
// MCP server, and the result comes back on the client's one subscription.
func Example() {
	url, stop, err := startToolbus() // toolbus serve, in this process
	if err != nil {
		panic(err)
	}
	defer stop()

	nc, err := nats.Connect(url)
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithAgent("alice"))
	if err != nil {
		panic(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Call(ctx, "demo", "echo", map[string]string{"message": "hello, bus"})
	if err != nil {
		panic(err) // no result in time, or the call could not be published
	}
	if err := res.Err(); err != nil {
		panic(err) // toolbus could not run it: err is a *subjects.Error with a code
	}
	var out struct {
		Content []struct{ Text string } `json:"content"`
	}
	if err := json.Unmarshal(res.Result, &out); err != nil {
		panic(err)
	}
	fmt.Println(res.Status, out.Content[0].Text)
	// Output: ok hello, bus
}

// A call's options: its own id (a retry with the same id is answered with
// the first result), a deadline, a W3C trace context,
// progress; WithResultPoll sets how often a waiting call also looks for a
// stored result it may have missed. An error result names a stable code.
func ExampleClient_Call() {
	c, stop, err := startClient(client.WithAgent("alice"), client.WithResultPoll(time.Second))
	if err != nil {
		panic(err)
	}
	defer stop()

	ctx := context.Background()
	res, err := c.Call(ctx, "demo", "sleep", map[string]int{"ms": 30, "steps": 3},
		client.WithCallID("nightly-report-2026-11-29"),
		client.WithTimeout(20*time.Second),
		client.WithTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		client.WithProgress(func(p subjects.Progress) { log.Printf("%s: %v of %v", p.CallID, p.Progress, p.Total) }))
	if err != nil {
		panic(err)
	}
	fmt.Println(res.CallID, res.Status)

	res, err = c.Call(ctx, "demo", "no-such-tool", nil, client.WithTimeout(20*time.Second))
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Status, res.Error.Code)
	// Output:
	// nightly-report-2026-11-29 ok
	// error unknown_tool
}
