// Command stdiosrv is the MCP server mcppool's tests run over stdio: echo,
// a tool that exits the process, one that writes to stderr, one that reports
// progress, one that tells its pid (to see respawns), and ones that tell
// its environment and arguments (to see what reaches a child).
//
// STDIOSRV_SPAWN_LOG names a file it appends its pid to at start, to count
// the processes a test ran. With STDIOSRV_LIST_CHANGED set it declares
// tools.listChanged, and its tool "addtool" adds a tool (named by "name"),
// which sends notifications/tools/list_changed.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

func main() {
	if os.Getenv("STDIOSRV_FAIL_START") != "" {
		fmt.Fprintln(os.Stderr, "stdiosrv: refusing to start: STDIOSRV_FAIL_START is set")
		os.Exit(2)
	}
	if path := os.Getenv("STDIOSRV_SPAWN_LOG"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, os.Getpid())
			err = f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "stdiosrv: spawn log:", err)
			os.Exit(2)
		}
	}
	listChanged := os.Getenv("STDIOSRV_LIST_CHANGED") != ""
	s := server.NewMCPServer("stdiosrv", "1", server.WithToolCapabilities(listChanged))
	if listChanged {
		s.AddTool(mcp.NewTool("addtool", mcp.WithString("name", mcp.Required())), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			s.AddTool(mcp.NewTool(req.GetString("name", "")), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("added"), nil
			})
			return mcp.NewToolResultText("added"), nil
		})
	}
	s.AddTool(mcp.NewTool("echo"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		raw, _ := json.Marshal(req.GetArguments())
		return mcp.NewToolResultText(string(raw)), nil
	})
	s.AddTool(mcp.NewTool("exit", mcp.WithNumber("code")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		fmt.Fprintln(os.Stderr, "stdiosrv: exiting on request")
		os.Exit(req.GetInt("code", 3))
		return nil, nil
	})
	s.AddTool(mcp.NewTool("stderr", mcp.WithString("line")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		fmt.Fprintln(os.Stderr, req.GetString("line", "hello from stderr"))
		return mcp.NewToolResultText("written"), nil
	})
	s.AddTool(mcp.NewTool("pid"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(fmt.Sprint(os.Getpid())), nil
	})
	s.AddTool(mcp.NewTool("env", mcp.WithString("name")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		wd, _ := os.Getwd()
		return mcp.NewToolResultText(os.Getenv(req.GetString("name", "")) + "|" + wd), nil
	})
	s.AddTool(mcp.NewTool("environ"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		raw, _ := json.Marshal(os.Environ())
		return mcp.NewToolResultText(string(raw)), nil
	})
	s.AddTool(mcp.NewTool("args"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		raw, _ := json.Marshal(os.Args[1:])
		return mcp.NewToolResultText(string(raw)), nil
	})
	s.AddTool(mcp.NewTool("progress", mcp.WithNumber("steps")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		steps := req.GetInt("steps", 3)
		var token any
		if req.Params.Meta != nil {
			token = req.Params.Meta.ProgressToken
		}
		for i := 1; i <= steps && token != nil; i++ {
			_ = server.ServerFromContext(ctx).SendNotificationToClient(ctx, "notifications/progress", map[string]any{
				"progressToken": token, "progress": i, "total": steps, "message": fmt.Sprintf("step %d", i),
			})
		}
		// mcp-go's server queues notifications apart from responses: give
		// the queue a moment so the last one does not trail the result.
		// (Only the last can: the queue keeps their order.)
		if token != nil {
			time.Sleep(200 * time.Millisecond)
		}
		return mcp.NewToolResultText("done"), nil
	})
	s.AddTool(mcp.NewTool("sleep", mcp.WithNumber("ms")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		select {
		case <-time.After(time.Duration(req.GetInt("ms", 1000)) * time.Millisecond):
			return mcp.NewToolResultText("slept"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	if err := server.ServeStdio(s); err != nil {
		fmt.Fprintln(os.Stderr, "stdiosrv:", err)
		os.Exit(1)
	}
}
