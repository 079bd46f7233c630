package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/bridge"
	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/internal/frontdoor"
)

func init() {
	c := &command{
		name:    "gateway",
		summary: "serve the MCP front door only (streamable HTTP at /mcp): stateless, no worker; run any number of replicas",
		usage:   "toolbus gateway [--listen 127.0.0.1:8088] [--config toolbus.yaml] [flags]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		conn := addConnFlags(fs)
		configPath := fs.String("config", "", "config file (default ./toolbus.yaml if present); its mcp section: tokens, views, timeouts")
		listen := fs.String("listen", "", "listen address (default config mcp.listen, else "+frontdoor.DefaultListen+")")
		logLevel := fs.String("log-level", "info", "debug, info, warn or error")
		if _, err := parseArgs(fs, args); err != nil {
			return err
		}
		log := newLogger(*logLevel)
		cfg, fc, err := loadFrontDoor(fs, conn, *configPath)
		if err != nil {
			return err
		}
		addr := *listen
		if addr == "" {
			addr = cfg.MCP.Listen
		}
		if addr == "" || addr == "off" {
			addr = frontdoor.DefaultListen
		}
		if err := frontdoor.CheckListen(addr, fc); err != nil {
			return err
		}
		nc, _, err := conn.connect("toolbus-gateway", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		g, err := frontdoor.New(ctx, nc, fc, frontdoor.WithLogger(log))
		if err != nil {
			return err
		}
		defer g.Close()
		return g.ListenAndServe(ctx, addr)
	}
	register(c)
}

// loadFrontDoor reads the config file's mcp section, secrets resolved, and
// takes nats.url from it unless --nats-url / NATS_URL said otherwise.
func loadFrontDoor(fs *flag.FlagSet, conn *connFlags, path string) (*config.Config, frontdoor.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, frontdoor.Config{}, err
	}
	if !flagSet(fs, "nats-url") && os.Getenv("NATS_URL") == "" && cfg.NATS.URL != "" {
		conn.cfg.URL = cfg.NATS.URL
	}
	fc, err := frontdoor.FromConfig(cfg.MCP, cfg.Path)
	return cfg, fc, err
}

// startFrontDoor runs the MCP front door inside serve: on the bridge's
// listener (returned as a bridge option) when mcp.listen is unset or the
// bridge's own address, on its own listener otherwise, not at all when
// "off" or when it is unset and the bridge is off (bridgeAddr "").
func startFrontDoor(ctx context.Context, svc *services, nc *nats.Conn, cfg *config.Config, log zerolog.Logger, bridgeAddr string) ([]bridge.Option, error) {
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
	g, err := frontdoor.New(ctx, nc, fc, frontdoor.WithLogger(log))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, g.Close)
	if shared {
		log.Info().Str("addr", addr).Str("path", g.Path()).Msg("MCP front door on the bridge's listener")
		return []bridge.Option{bridge.WithMount(g.Path(), g)}, nil
	}
	svc.run(ctx, "mcp", func(ctx context.Context) error { return g.ListenAndServe(ctx, addr) })
	return nil, nil
}
