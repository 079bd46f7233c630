package main

import (
	"context"
	"os"

	"github.com/toolbus-dev/toolbus/internal/frontdoor"
)

func init() {
	c := &command{
		name:    "mcp",
		summary: "speak MCP on stdin/stdout: the whole catalog as one MCP server, every call a durable bus call (for Claude Desktop, Cursor)",
		usage:   "toolbus mcp [--view name] [--agent id] [--config toolbus.yaml] [flags]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		conn := addConnFlags(fs)
		configPath := fs.String("config", "", "config file (default ./toolbus.yaml if present); its mcp section: agent, views, timeouts")
		view := fs.String("view", "", "serve this view of mcp.views instead of every tool")
		agent := fs.String("agent", "", "agent the calls run as (default config mcp.agent, else default)")
		logLevel := fs.String("log-level", "warn", "debug, info, warn or error (logs go to stderr)")
		if _, err := parseArgs(fs, args); err != nil {
			return err
		}
		log := newLogger(*logLevel)
		_, fc, err := loadFrontDoor(fs, conn, *configPath)
		if err != nil {
			return err
		}
		if *agent != "" {
			fc.Agent = *agent
		}
		nc, _, err := conn.connect("toolbus-mcp", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		g, err := frontdoor.New(ctx, nc, fc, frontdoor.WithLogger(log))
		if err != nil {
			return err
		}
		defer g.Close()
		return g.ServeStdio(ctx, *view, os.Stdin, os.Stdout)
	}
	register(c)
}
