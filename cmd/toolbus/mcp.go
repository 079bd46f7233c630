package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/frontdoor"
	"github.com/toolbus-dev/toolbus/subjects"
)

func newMCPCmd(a *app) *cobra.Command {
	var configPath, view, agent, logLevel string
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "speak MCP on stdin/stdout: the whole catalog as one MCP server, every call a durable bus call (for Claude Desktop, Cursor)",
		Long: `Speak MCP on stdin/stdout: the whole catalog (or one view of mcp.views) as
one MCP server, every tools/call a durable bus call. Point an MCP host such as
Claude Desktop or Cursor at this command. Logs go to stderr; stdout carries
only the protocol.`,
		Example: `  toolbus mcp                                     # every tool, calls as agent "default"
  toolbus mcp --view math --agent agent1 --config toolbus.yaml
  toolbus mcp --nats-url nats://nats1:4222 --nats-user gateway --nats-password "$GATEWAY_PASSWORD"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkLogLevel(logLevel); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), logLevel)
			cfg, fc, err := loadFrontDoor(configPath)
			if err != nil {
				return err
			}
			if agent != "" {
				if err := subjects.ValidateAgent(agent); err != nil {
					return usagef("--agent: %v", err)
				}
				fc.Agent = agent
			}
			return a.runFrontDoor(cmd.Context(), cfg, fc, "toolbus-mcp", log, func(ctx context.Context, g *frontdoor.Gateway) error {
				return g.ServeStdio(ctx, view, cmd.InOrStdin(), cmd.OutOrStdout())
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&configPath, "config", "", "config file (default ./toolbus.yaml if present); its mcp section: agent, views, timeouts")
	fs.StringVar(&view, "view", "", "serve this view of mcp.views instead of every tool")
	fs.StringVar(&agent, "agent", "", "agent the calls run as (default config mcp.agent, else default)")
	fs.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error (logs go to stderr)")
	return cmd
}
