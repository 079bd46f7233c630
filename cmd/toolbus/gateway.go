package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/internal/frontdoor"
)

func newGatewayCmd(a *app) *cobra.Command {
	var configPath, listen, logLevel string
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "serve the MCP front door only (streamable HTTP at /mcp): stateless, no worker; run any number of replicas",
		Long: `Serve the MCP front door only: the whole catalog as one MCP server over
streamable HTTP at /mcp, every tools/call a durable bus call. It keeps no
state of its own (tasks live in the toolbus_tasks bucket) and runs no worker,
so run any number of replicas behind a load balancer. The config file's mcp
section gives its bearer tokens, views and timeouts; beyond loopback it
refuses to start without tokens.`,
		Example: `  toolbus gateway                                 # 127.0.0.1:8088, ./toolbus.yaml's mcp section
  toolbus gateway --listen 0.0.0.0:8088 --config toolbus.yaml --nats-url nats://nats1:4222
  toolbus gateway --nats-user gateway --nats-password "$GATEWAY_PASSWORD"`,
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
			addr := listen
			if addr == "" {
				addr = cfg.MCP.Listen
			}
			if addr == "" || addr == "off" {
				addr = frontdoor.DefaultListen
			}
			if err := frontdoor.CheckListen(addr, fc); err != nil {
				return err
			}
			return a.runFrontDoor(cmd.Context(), cfg, fc, "toolbus-gateway", log, func(ctx context.Context, g *frontdoor.Gateway) error {
				return g.ListenAndServe(ctx, addr)
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&configPath, "config", "", "config file (default ./toolbus.yaml if present); its mcp section: tokens, views, timeouts")
	fs.StringVar(&listen, "listen", "", "listen address (default config mcp.listen, else "+frontdoor.DefaultListen+")")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// runFrontDoor connects to NATS as the config and flags say, opens the
// front door on it and runs serve until it returns: gateway and mcp differ
// only in serve.
func (a *app) runFrontDoor(ctx context.Context, cfg *config.Config, fc frontdoor.Config, name string, log zerolog.Logger, serve func(context.Context, *frontdoor.Gateway) error) error {
	ccfg, err := a.resolve(cfg.NATS.URL)
	if err != nil {
		return err
	}
	nc, _, err := dial(ccfg, name, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	fc.Version = moduleVersion()
	g, err := frontdoor.New(ctx, nc, fc, frontdoor.WithLogger(log))
	if err != nil {
		return err
	}
	defer g.Close()
	return serve(ctx, g)
}

// loadFrontDoor reads the config file and its mcp section, secrets resolved.
func loadFrontDoor(path string) (*config.Config, frontdoor.Config, error) {
	cfg, err := loadConfig(path, nil)
	if err != nil {
		return nil, frontdoor.Config{}, err
	}
	fc, err := frontdoor.FromConfig(cfg.MCP, cfg.Path)
	return cfg, fc, err
}

// startFrontDoor runs the MCP front door inside serve: on the bridge's
// listener (returned, for startBridge to mount at /mcp) when mcp.listen is
// unset or the bridge's own address, on its own listener otherwise, not at
// all when "off" or when it is unset and the bridge is off (bridgeAddr "").
func startFrontDoor(ctx context.Context, svc *services, nc *nats.Conn, cfg *config.Config, log zerolog.Logger, bridgeAddr string) (*frontdoor.Gateway, error) {
	addr := cfg.MCP.Listen
	if addr == "off" || addr == "" && bridgeAddr == "" {
		return nil, nil
	}
	fc, err := frontdoor.FromConfig(cfg.MCP, cfg.Path)
	if err != nil {
		return nil, err
	}
	shared := addr == "" || addr == bridgeAddr
	if shared {
		addr = bridgeAddr
	}
	if err := frontdoor.CheckListen(addr, fc); err != nil {
		return nil, fmt.Errorf("%w (or set mcp.listen: off)", err)
	}
	fc.Version = moduleVersion()
	g, err := frontdoor.New(ctx, nc, fc, frontdoor.WithLogger(log))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, g.Close)
	if shared {
		log.Info().Str("addr", addr).Str("path", g.Path()).Msg("MCP front door on the bridge's listener")
		return g, nil
	}
	svc.run(ctx, "mcp", func(ctx context.Context) error { return g.ListenAndServe(ctx, addr) })
	return nil, nil
}

// withFrontDoor serves the front door at its path and everything under it,
// and every other path by next (nil: 404): the bridge's handler for paths
// outside /hooks/.
func withFrontDoor(g *frontdoor.Gateway, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(g.Path(), g)
	mux.Handle(g.Path()+"/", g)
	if next != nil {
		mux.Handle("/", next)
	}
	return mux
}
