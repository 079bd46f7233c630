package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/bridge"
	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/config"
)

// defaultBridgeAddr is where the webhook bridge listens unless told otherwise.
const defaultBridgeAddr = "127.0.0.1:8088"

func init() {
	c := &command{
		name:    "bridge",
		summary: "run the webhook bridge: POST /hooks/<name> → events, wake-ups or tool calls",
		usage:   "toolbus bridge [--addr 127.0.0.1:8088] [--config toolbus.yaml | --hooks hooks.json]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		conn := addConnFlags(fs)
		addr := fs.String("addr", "", "listen address (default config bridge.addr, else "+defaultBridgeAddr+")")
		configPath := fs.String("config", "", "config file with a hooks: section (default ./toolbus.yaml if present)")
		hooksPath := fs.String("hooks", "", "a JSON array of hooks, instead of the config file's hooks: section")
		logLevel := fs.String("log-level", "info", "debug, info, warn or error")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("unexpected arguments %q", fs.Args())
		}
		log := newLogger(*logLevel)
		cfg, err := config.Load(*configPath)
		if err != nil {
			return err
		}
		hooks, src, err := loadHooks(cfg, *hooksPath)
		if err != nil {
			return err
		}
		if len(hooks) == 0 {
			return usagef("no hooks: add a hooks: section to %s or pass --hooks FILE", config.DefaultFile)
		}
		listen := *addr
		if listen == "" {
			listen = cfg.Bridge.Addr
		}
		if listen == "" || listen == "off" {
			listen = defaultBridgeAddr
		}
		if !flagSet(fs, "nats-url") && cfg.NATS.URL != "" {
			conn.cfg.URL = cfg.NATS.URL
		}
		ccfg := conn.cfg
		ccfg.Name = "toolbus-bridge"
		// No reconnect buffer: a publish while disconnected fails at once
		// (503) instead of being sent later for a request already refused.
		nc, err := broker.Connect(ccfg, log, nats.Timeout(5*time.Second), nats.ReconnectBufSize(-1))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		b, err := bridge.New(js, hooks, log)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		return b.Run(ctx, listen)
	}
	register(c)
}

// loadHooks reads --hooks (a JSON array) when given, else the config file's
// hooks: section. It returns the hooks and where they came from.
func loadHooks(cfg *config.Config, path string) ([]bridge.Hook, string, error) {
	var hooks []bridge.Hook
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, path, fmt.Errorf("hooks: %w", err)
		}
		if err := json.Unmarshal(data, &hooks); err != nil {
			return nil, path, fmt.Errorf("%s: want a JSON array of hooks: %w", path, err)
		}
		return hooks, path, nil
	}
	src := cfg.Path
	if src == "" {
		src = "config"
	}
	if err := config.Decode("hooks", cfg.Hooks, &hooks); err != nil {
		return nil, src, fmt.Errorf("%s: %w", src, err)
	}
	return hooks, src, nil
}
