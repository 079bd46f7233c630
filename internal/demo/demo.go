// Package demo owns toolbus's demo MCP server: a small mcp-go server with
// deterministic tools served over stdio, SSE or streamable HTTP. Tests and
// benchmarks use it as a real MCP peer; `toolbus demo` and cmd/mcp-demo run
// it for people trying toolbus out.
//
// By default it offers only harmless tools (SafeTools: echo, echo_plain,
// add, sleep with progress, sleep_plain, fail, whoami). Options.Faults adds the fault-injection and
// test tools (FaultTools: crash, kill_parent, destroy, count, executions),
// which exit the process, kill its parent or pose as destructive: they are
// for tests, never for a server people call by hand.
//
// The count and destroy tools record every execution, in memory and, when
// Options.ExecLog is set, as one line in a file, so a test can tell how many
// times a call really ran across retries, restarts and processes.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolbus-dev/toolbus/subjects"
)

// Name is the server name the demo server reports to clients.
const Name = "toolbus-demo"

// Version is the server version the demo server reports to clients.
const Version = "0.1.0"

// CrashExitCode is the exit status of the process after the crash tool.
const CrashExitCode = 3

// KillParentExitCode is the exit status of the process after the
// kill_parent tool has killed its parent.
const KillParentExitCode = 4

// defaultSleepSteps is the number of progress steps the sleep tool reports
// when the call does not say.
const defaultSleepSteps = 5

// SafeTools are the tools every demo server offers: none of them changes
// anything or harms the process that runs it.
//
// echo_plain and sleep_plain are echo and sleep without MCP annotations, as
// most real servers' tools are: a bus must treat them as destructive and not
// idempotent (benchmarks use them to measure that path).
var SafeTools = []string{"echo", "echo_plain", "add", "sleep", "sleep_plain", "fail", "whoami"}

// FaultTools are the tools only a demo server with Options.Faults offers:
// crash and kill_parent end the server (and its parent), destroy poses as a
// destructive tool, count and executions count what really ran.
var FaultTools = []string{"crash", "kill_parent", "destroy", "count", "executions"}

// Options configures the demo server's tools.
type Options struct {
	// Faults adds FaultTools to the server. They exist for tests: a
	// kill_parent call on a stdio demo kills the process that started it
	// (a toolbus worker, or toolbus serve with its embedded NATS).
	// Default: false (SafeTools only).
	Faults bool
	// ExecLog, when set, is a file to which every execution recorded by the
	// count and destroy tools is appended as one line "<tool> <key>\n".
	// Only those fault tools record, so it matters only with Faults.
	// Default: none (executions are only counted in memory).
	ExecLog string
}

// NewServer returns an mcp-go server named "toolbus-demo" with SafeTools
// registered, and FaultTools too when opts.Faults is set. Each server has
// its own in-memory execution counters.
func NewServer(opts Options) *server.MCPServer {
	s := server.NewMCPServer(Name, Version,
		server.WithToolCapabilities(false),
		server.WithRecovery(),
	)
	t := &tools{srv: s, opts: opts, counts: make(map[string]int)}
	t.register()
	return s
}

// tools holds the state shared by the tool handlers of one server.
type tools struct {
	srv  *server.MCPServer
	opts Options

	mu     sync.Mutex
	counts map[string]int
	logMu  sync.Mutex // serialises ExecLog appends from this process
}

// readOnly marks a tool as safe to run any number of times with no effect.
func readOnly() []mcp.ToolOption {
	return []mcp.ToolOption{
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
		mcp.WithIdempotentHintAnnotation(true),
		mcp.WithOpenWorldHintAnnotation(false),
	}
}

// retrySafe marks a tool as harmless to re-run. mcp-go's NewTool defaults
// every tool to destructive and not idempotent, so tools must say otherwise.
func retrySafe() []mcp.ToolOption {
	return []mcp.ToolOption{
		mcp.WithReadOnlyHintAnnotation(false),
		mcp.WithDestructiveHintAnnotation(false),
		mcp.WithIdempotentHintAnnotation(true),
		mcp.WithOpenWorldHintAnnotation(false),
	}
}

// unannotated drops the annotations mcp-go's NewTool fills in, so the tool
// is listed with none, as most servers' tools are.
func unannotated(t mcp.Tool) mcp.Tool {
	t.Annotations = mcp.ToolAnnotation{}
	return t
}

func tool(name string, opts ...[]mcp.ToolOption) mcp.Tool {
	var all []mcp.ToolOption
	for _, o := range opts {
		all = append(all, o...)
	}
	return mcp.NewTool(name, all...)
}

func (t *tools) register() {
	t.srv.AddTools(t.safe()...)
	if t.opts.Faults {
		t.srv.AddTools(t.faults()...)
	}
}

// safe returns the tools of SafeTools.
func (t *tools) safe() []server.ServerTool {
	return []server.ServerTool{
		{
			Tool: tool("echo", readOnly(), []mcp.ToolOption{
				mcp.WithDescription("Returns the message unchanged."),
				mcp.WithString("message", mcp.Required(), mcp.Description("text to echo")),
			}),
			Handler: t.echo,
		},
		{
			Tool:    unannotated(mcp.NewTool("echo_plain", mcp.WithDescription("Returns the message unchanged. Declares no annotations (so clients take it as destructive and not idempotent)."), mcp.WithString("message", mcp.Required(), mcp.Description("text to echo")))),
			Handler: t.echo,
		},
		{
			Tool: tool("add", readOnly(), []mcp.ToolOption{
				mcp.WithDescription("Returns a+b."),
				mcp.WithNumber("a", mcp.Required(), mcp.Description("first addend")),
				mcp.WithNumber("b", mcp.Required(), mcp.Description("second addend")),
			}),
			Handler: t.add,
		},
		{
			Tool: tool("sleep", retrySafe(), []mcp.ToolOption{
				mcp.WithDescription("Sleeps ms milliseconds, reporting progress in steps when the call carries a progress token. Stops when cancelled."),
				mcp.WithInteger("ms", mcp.Required(), mcp.Min(0), mcp.Description("total time to sleep, in milliseconds")),
				mcp.WithInteger("steps", mcp.Min(1), mcp.DefaultNumber(defaultSleepSteps), mcp.Description("number of progress notifications")),
			}),
			Handler: t.sleep,
		},
		{
			Tool: unannotated(tool("sleep_plain", []mcp.ToolOption{
				mcp.WithDescription("Sleeps ms milliseconds, reporting progress in steps when the call carries a progress token. Stops when cancelled. Declares no annotations."),
				mcp.WithInteger("ms", mcp.Required(), mcp.Min(0), mcp.Description("total time to sleep, in milliseconds")),
				mcp.WithInteger("steps", mcp.Min(1), mcp.DefaultNumber(defaultSleepSteps), mcp.Description("number of progress notifications")),
			})),
			Handler: t.sleep,
		},
		{
			Tool: tool("fail", readOnly(), []mcp.ToolOption{
				mcp.WithDescription("Always returns a tool error (isError: true) with the message."),
				mcp.WithString("message", mcp.Description("error text; default \"demo failure\"")),
			}),
			Handler: t.fail,
		},
		{
			Tool: tool("whoami", readOnly(), []mcp.ToolOption{
				mcp.WithDescription("Returns the agent id the request carried in its x-agent-id HTTP header (empty over stdio) as text, and as structured content with the W3C trace context it carried: the traceparent HTTP header and params._meta.traceparent."),
			}),
			Handler: t.whoami,
		},
	}
}

// faults returns the tools of FaultTools.
func (t *tools) faults() []server.ServerTool {
	return []server.ServerTool{
		{
			// Marked retry-safe so that a bus redelivers it until it gives up:
			// it is the poison message of crash-recovery tests.
			Tool: tool("crash", retrySafe(), []mcp.ToolOption{
				mcp.WithDescription("Exits the server process at once with status 3, without replying. Only meaningful over stdio; used to test poison messages and MCP server restarts."),
			}),
			Handler: t.crash,
		},
		{
			// A poison pill for tests: run as a stdio child of a toolbus
			// worker, it kills that worker. Marked retry-safe so a bus
			// redelivers it until it gives up and dead-letters it.
			Tool: tool("kill_parent", retrySafe(), []mcp.ToolOption{
				mcp.WithDescription("Poison pill for tests: sends SIGKILL to this server's parent process, then exits with status 4, without replying. As a stdio child of a toolbus worker it kills that worker. Never register it in production."),
			}),
			Handler: t.killParent,
		},
		{
			Tool: tool("count", []mcp.ToolOption{
				mcp.WithDescription("Records one execution of key (after sleeping ms, if given) and returns how many times key has run on this server."),
				mcp.WithString("key", mcp.Required(), mcp.Description("counter name")),
				mcp.WithInteger("ms", mcp.Min(0), mcp.Description("milliseconds to sleep before recording")),
				mcp.WithReadOnlyHintAnnotation(false),
				mcp.WithIdempotentHintAnnotation(true),
				mcp.WithDestructiveHintAnnotation(false),
				mcp.WithOpenWorldHintAnnotation(false),
			}),
			Handler: t.count,
		},
		{
			Tool: tool("destroy", []mcp.ToolOption{
				mcp.WithDescription("Records one execution of key, then sleeps ms. Destructive and not idempotent: must not be blindly re-run."),
				mcp.WithString("key", mcp.Required(), mcp.Description("what to destroy")),
				mcp.WithInteger("ms", mcp.Min(0), mcp.Description("milliseconds to sleep after recording")),
				mcp.WithReadOnlyHintAnnotation(false),
				mcp.WithDestructiveHintAnnotation(true),
				mcp.WithIdempotentHintAnnotation(false),
				mcp.WithOpenWorldHintAnnotation(false),
			}),
			Handler: t.destroy,
		},
		{
			Tool: tool("executions", readOnly(), []mcp.ToolOption{
				mcp.WithDescription("Returns a JSON object of key to the number of recorded executions on this server: all keys, or only key."),
				mcp.WithString("key", mcp.Description("only this key")),
			}),
			Handler: t.executions,
		},
	}
}

// Whoami is the structured content of the whoami tool: what the request
// said about its caller, for tests of what toolbus passes on.
type Whoami struct {
	Agent           string `json:"agent"`
	Traceparent     string `json:"traceparent,omitempty"`      // the HTTP header
	MetaTraceparent string `json:"meta_traceparent,omitempty"` // params._meta.traceparent
}

func (t *tools) whoami(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	w := Whoami{Agent: req.Header.Get(subjects.AgentHTTPHeader), Traceparent: req.Header.Get("traceparent")}
	if m := req.Params.Meta; m != nil {
		w.MetaTraceparent, _ = m.AdditionalFields["traceparent"].(string)
	}
	return mcp.NewToolResultStructured(w, w.Agent), nil
}

func (t *tools) echo(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	msg, err := req.RequireString("message")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	return mcp.NewToolResultText(msg), nil
}

func (t *tools) add(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, err := req.RequireFloat("a")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	b, err := req.RequireFloat("b")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	return mcp.NewToolResultText(strconv.FormatFloat(a+b, 'f', -1, 64)), nil
}

func (t *tools) sleep(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	ms, err := req.RequireInt("ms")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if ms < 0 {
		return mcp.NewToolResultError("ms must not be negative"), nil
	}
	steps := max(req.GetInt("steps", defaultSleepSteps), 1)
	var token mcp.ProgressToken
	if req.Params.Meta != nil {
		token = req.Params.Meta.ProgressToken
	}

	total := time.Duration(ms) * time.Millisecond
	start := time.Now()
	for i := 1; i <= steps; i++ {
		// Aim each step at its share of the total from the start, so the
		// notifications' own cost does not stretch the sleep.
		if err := sleepFor(ctx, total*time.Duration(i)/time.Duration(steps)-time.Since(start)); err != nil {
			return nil, err
		}
		if token != nil {
			t.progress(ctx, token, i, steps)
		}
	}
	if token != nil {
		settle(ctx)
	}
	return mcp.NewToolResultText(fmt.Sprintf("slept %dms", ms)), nil
}

// progress sends one notifications/progress to the caller. Progress is best
// effort: a full notification queue drops it rather than fail the call.
func (t *tools) progress(ctx context.Context, token mcp.ProgressToken, i, steps int) {
	_ = t.srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
		"progressToken": token,
		"progress":      i,
		"total":         steps,
		"message":       fmt.Sprintf("step %d/%d", i, steps),
	})
}

func (t *tools) fail(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultError(req.GetString("message", "demo failure")), nil
}

func (t *tools) crash(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	os.Exit(CrashExitCode)
	return nil, nil
}

func (t *tools) killParent(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	// os.Process.Kill is SIGKILL on Unix. Parent 1 (or 0) means the parent
	// is already gone and we were re-parented: kill nothing.
	if ppid := os.Getppid(); ppid > 1 {
		if p, err := os.FindProcess(ppid); err == nil {
			_ = p.Kill()
		}
	}
	os.Exit(KillParentExitCode)
	return nil, nil
}

func (t *tools) count(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	key, err := req.RequireString("key")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if err := wait(ctx, req.GetInt("ms", 0)); err != nil {
		return nil, err
	}
	n, err := t.record(req.Params.Name, key)
	if err != nil {
		return nil, err
	}
	return mcp.NewToolResultText(strconv.Itoa(n)), nil
}

func (t *tools) destroy(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	key, err := req.RequireString("key")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if _, err := t.record(req.Params.Name, key); err != nil {
		return nil, err
	}
	if err := wait(ctx, req.GetInt("ms", 0)); err != nil {
		return nil, err
	}
	return mcp.NewToolResultText("destroyed " + key), nil
}

func (t *tools) executions(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	key := req.GetString("key", "")
	t.mu.Lock()
	out := make(map[string]int, len(t.counts))
	if key != "" {
		out[key] = t.counts[key]
	} else {
		for k, n := range t.counts {
			out[k] = n
		}
	}
	t.mu.Unlock()
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return mcp.NewToolResultText(string(b)), nil
}

// record counts one execution of key and appends it to the ExecLog, if any.
// It returns the number of executions of key so far on this server.
func (t *tools) record(tool, key string) (int, error) {
	t.mu.Lock()
	t.counts[key]++
	n := t.counts[key]
	t.mu.Unlock()
	if t.opts.ExecLog == "" {
		return n, nil
	}
	t.logMu.Lock()
	defer t.logMu.Unlock()
	f, err := os.OpenFile(t.opts.ExecLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return n, fmt.Errorf("demo: exec log: %w", err)
	}
	// One write per line: O_APPEND makes it atomic against other processes.
	_, err = f.WriteString(tool + " " + key + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("demo: exec log: %w", err)
	}
	return n, nil
}

// settle works around a race in mcp-go v1.2.1's streamable HTTP transport:
// a notification its forwarder has taken off the session's queue but not yet
// written is dropped if the handler returns first, so the last progress
// notification of a call was usually lost. On that transport, wait for the
// queue to empty and give the forwarder a moment to write. stdio and SSE
// write notifications from a long-lived goroutine and need no wait.
func settle(ctx context.Context) {
	session := server.ClientSessionFromContext(ctx)
	if _, ok := session.(server.SessionWithStreamableHTTPConfig); !ok {
		return
	}
	ch := session.NotificationChannel()
	for deadline := time.Now().Add(time.Second); len(ch) > 0 && time.Now().Before(deadline); {
		if sleepFor(ctx, time.Millisecond) != nil {
			return
		}
	}
	_ = sleepFor(ctx, 5*time.Millisecond)
}

// wait sleeps ms milliseconds or until ctx ends.
func wait(ctx context.Context, ms int) error {
	return sleepFor(ctx, time.Duration(ms)*time.Millisecond)
}

// sleepFor sleeps d or until ctx ends, whichever comes first.
func sleepFor(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return context.Cause(ctx)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-timer.C:
		return nil
	}
}
