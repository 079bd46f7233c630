package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/subjects"
)

// cancelWait bounds how long an interrupted call waits for the answer to
// its cancel before giving up on it.
const cancelWait = 15 * time.Second

// exitInterrupted is the exit status of a call stopped by SIGINT/SIGTERM.
const exitInterrupted = 130

func newCallCmd(a *app) *cobra.Command {
	var (
		timeout          time.Duration
		agent, id        string
		asJSON, progress bool
		detach           bool
	)
	cmd := &cobra.Command{
		Use:   "call <server> <tool> [json-arguments | -]",
		Short: "call a tool through the bus and print its result",
		Long: `Call a tool through the bus and print its result: text content as it is, other
content as JSON, errors on stderr with their code. The exit status is 0 for
ok, 1 for a tool error or an error result, 2 for bad usage.

Ctrl-C (SIGINT) or SIGTERM while waiting cancels the call on the bus: the
worker stops the tool and answers "cancelled", and toolbus exits 130 (a second
Ctrl-C exits at once). --detach publishes the call, prints its id and exits 0;
read the result later with 'toolbus result <id>'.`,
		Example: `  toolbus call demo add '{"a":2,"b":3}'                 # prints 5
  toolbus call demo echo '{"message":"hello"}' --json   # the whole result, for scripts
  toolbus call demo sleep '{"ms":2000}' --progress      # progress notifications on stderr
  echo '{"a":1,"b":2}' | toolbus call demo add -        # arguments from stdin
  id=$(toolbus call --detach demo sleep '{"ms":60000}' --timeout 5m)
  toolbus result --wait 5m -- "$id"                     # -- as an id may start with "-"`,
		Args: wantArgs(2, 3, "<server> <tool> [json-arguments | -]"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			server, tool := pos[0], pos[1]
			body := []byte("{}")
			if len(pos) == 3 {
				if pos[2] == "-" {
					b, err := io.ReadAll(cmd.InOrStdin())
					if err != nil {
						return fmt.Errorf("read arguments from stdin: %w", err)
					}
					body = b
				} else {
					body = []byte(pos[2])
				}
			}
			if t := bytes.TrimSpace(body); len(t) > 0 && !json.Valid(t) {
				return usagef("arguments are not valid JSON: %s (quote them for the shell: '{\"a\":2}')", truncate(string(t), 80))
			}
			if detach && progress {
				return usagef("--progress needs a caller that waits; drop --detach or --progress")
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			nc, js, who, err := a.connectAs("toolbus-call", agent, zerolog.Nop())
			if err != nil {
				return err
			}
			defer nc.Close()
			cl, err := client.New(nc, client.WithAgent(who), client.WithLogger(newLogger(stderr, "warn")))
			if err != nil {
				return err
			}
			defer cl.Close()
			if id == "" {
				id = client.NewCallID()
			}
			ctx, endTrace, err := traceCall(cmd.Context(), a.getenv, who, server, tool, id, newLogger(stderr, "warn"))
			if err != nil {
				return err
			}
			if detach {
				err := publishDetached(cmd, trace.SpanContextFromContext(ctx), js, who, server, tool, id, body, timeout)
				endTrace(nil)
				return err
			}
			opts := []client.CallOption{client.WithTimeout(timeout), client.WithCallID(id)}
			if progress {
				opts = append(opts, client.WithProgress(func(p subjects.Progress) {
					fmt.Fprintf(stderr, "progress %g/%g %s\n", p.Progress, p.Total, p.Message)
				}))
			}
			res, interrupted, err := callInterruptible(ctx, cl, server, tool, id, body, stderr, opts)
			endTrace(res)
			if err != nil {
				return err
			}
			if asJSON {
				out, _ := json.MarshalIndent(res, "", "  ")
				fmt.Fprintln(stdout, string(out))
			} else {
				printResult(stdout, stderr, res)
			}
			switch {
			case interrupted && res.Status == subjects.StatusError && res.Error.Code == subjects.CodeCancelled:
				fmt.Fprintf(stderr, "call %s cancelled on interrupt\n", id)
				return exitError{code: exitInterrupted}
			case interrupted:
				fmt.Fprintf(stderr, "call %s had ended before the cancel reached it\n", id)
			}
			if res.Status != subjects.StatusOK {
				return exitError{code: 1}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&timeout, "timeout", client.DefaultTimeout, "deadline for the call (the worker cancels the tool after it)")
	fs.StringVar(&agent, "agent", "", "the agent to call as (default: the NATS user, else \"default\"); with NATS authentication, the agent your user may act as")
	envFlag(fs, "agent", "TOOLBUS_AGENT")
	fs.BoolVar(&asJSON, "json", false, "print the whole result as JSON (for scripts)")
	fs.StringVar(&id, "id", "", "call id (default: random); re-sending an id gets its stored result, it does not run twice")
	fs.BoolVar(&progress, "progress", false, "print the tool's progress notifications to stderr")
	fs.BoolVar(&detach, "detach", false, "publish the call, print its id and exit 0 without waiting (read it later: toolbus result <id>)")
	return cmd
}

// callInterruptible runs the call until its result arrives. When ctx ends
// first (SIGINT/SIGTERM), it cancels the call on the bus and waits up to
// cancelWait for the answer, normally "cancelled"; interrupted says so.
func callInterruptible(ctx context.Context, cl *client.Client, server, tool, id string, body []byte, stderr io.Writer, opts []client.CallOption) (res *subjects.Result, interrupted bool, err error) {
	// The call itself does not end with ctx: its result is what tells
	// whether the cancel worked.
	callCtx, stopCall := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCall()
	type outcome struct {
		res *subjects.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := cl.Call(callCtx, server, tool, json.RawMessage(body), opts...)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, false, o.err
	case <-ctx.Done():
	}
	fmt.Fprintf(stderr, "interrupted: cancelling call %s (Ctrl-C again to exit at once)\n", id)
	if err := cl.Cancel(id); err != nil {
		return nil, true, fmt.Errorf("cancel call %s: %w", id, err)
	}
	timer := time.NewTimer(cancelWait)
	defer timer.Stop()
	select {
	case o := <-done:
		return o.res, true, o.err
	case <-timer.C:
		fmt.Fprintf(stderr, "no answer to the cancel of call %s within %v: no worker may have it yet; it is answered \"cancelled\" when one takes it (%s)\n", id, cancelWait, resultCommand(id))
		return nil, true, exitError{code: exitInterrupted}
	}
}

// publishDetached publishes the call as client.Call would, waits only for
// JetStream to accept it, and prints its id on stdout and how to read the
// result on stderr.
func publishDetached(cmd *cobra.Command, sc trace.SpanContext, js jetstream.JetStream, agent, server, tool, id string, body []byte, timeout time.Duration) error {
	if err := subjects.ValidateCallID(id); err != nil {
		return usagef("--id: %v", err)
	}
	subject, err := subjects.ToolCall(agent, server, tool)
	if err != nil {
		return usagef("%v", err)
	}
	deadline := time.Now().Add(timeout)
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set(subjects.HeaderCallID, id)
	msg.Header.Set(subjects.HeaderDeadline, subjects.FormatDeadline(deadline))
	if sc.IsValid() {
		msg.Header.Set(subjects.HeaderTraceparent, subjects.FormatTraceparent(sc.TraceID(), sc.SpanID(), byte(sc.TraceFlags())))
	}
	ack, err := js.PublishMsg(cmd.Context(), msg)
	if err != nil {
		return fmt.Errorf("call not accepted by JetStream (is `toolbus serve` running, and may this connection publish %s?): %w", subject, err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), id)
	dup := ""
	if ack.Duplicate {
		dup = " (a call with this id was already queued; this one was dropped as its duplicate)"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "call %s queued%s, deadline %s; read its result with: %s (--wait 1m to wait for it)\n",
		id, dup, subjects.FormatDeadline(deadline), resultCommand(id))
	return nil
}

// printResult prints a result for a person: the text content as it is,
// other content as JSON; errors on stderr with their code.
func printResult(stdout, stderr io.Writer, res *subjects.Result) {
	if res.Status == subjects.StatusError {
		fmt.Fprintf(stderr, "error (%s): %s\n", res.Error.Code, res.Error.Message)
		return
	}
	var r struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		Structured json.RawMessage `json:"structuredContent"`
	}
	_ = json.Unmarshal(res.Result, &r)
	w := stdout
	if res.Status == subjects.StatusToolError {
		w = stderr
		fmt.Fprint(stderr, "tool error: ")
	}
	printed := false
	for i, c := range r.Content {
		if c.Type == "text" {
			fmt.Fprintln(w, c.Text)
			printed = true
			continue
		}
		fmt.Fprintf(w, "[content %d: %s]\n", i, c.Type)
		printed = true
	}
	if !printed {
		var buf bytes.Buffer
		_ = json.Indent(&buf, res.Result, "", "  ")
		fmt.Fprintln(w, buf.String())
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimSpace(s[:n]) + "…"
}
