package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/subjects"
)

func init() {
	c := &command{
		name:    "call",
		summary: "call a tool through the bus and print its result",
		usage:   "toolbus call [flags] <server> <tool> [json-arguments | -]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		conn := addConnFlags(fs)
		timeout := fs.Duration("timeout", 60*time.Second, "deadline for the call (the worker cancels the tool after it)")
		agent := fs.String("agent", os.Getenv("TOOLBUS_AGENT"), "the agent to call as (env TOOLBUS_AGENT; default: the NATS user, else \"default\"); with NATS authentication, the agent your user may act as")
		asJSON := fs.Bool("json", false, "print the whole result as JSON (for scripts)")
		id := fs.String("id", "", "call id (default: random); re-sending an id gets its stored result, it does not run twice")
		progress := fs.Bool("progress", false, "print the tool's progress notifications to stderr")
		pos, err := parseArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) < 2 || len(pos) > 3 {
			return usagef("want <server> <tool> [json-arguments | -], got %d arguments", len(pos))
		}
		server, tool := pos[0], pos[1]
		body := []byte("{}")
		if len(pos) == 3 {
			if pos[2] == "-" {
				b, err := io.ReadAll(os.Stdin)
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
		who := conn.agent(*agent)
		nc, _, err := conn.connect("toolbus-call", zerolog.Nop())
		if err != nil {
			return err
		}
		defer nc.Close()
		cl, err := client.New(nc, client.WithAgent(who), client.WithLogger(newLogger("warn")))
		if err != nil {
			return err
		}
		defer cl.Close()
		opts := []client.CallOption{client.WithTimeout(*timeout)}
		if *id != "" {
			opts = append(opts, client.WithCallID(*id))
		}
		if *progress {
			opts = append(opts, client.WithProgress(func(p subjects.Progress) {
				fmt.Fprintf(os.Stderr, "progress %g/%g %s\n", p.Progress, p.Total, p.Message)
			}))
		}
		res, err := cl.Call(ctx, server, tool, json.RawMessage(body), opts...)
		if err != nil {
			return err
		}
		if *asJSON {
			out, _ := json.MarshalIndent(res, "", "  ")
			fmt.Println(string(out))
		} else {
			printResult(os.Stdout, os.Stderr, res)
		}
		if res.Status != subjects.StatusOK {
			return exitError{code: 1}
		}
		return nil
	}
	register(c)
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
