package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/bridge"
	"github.com/toolbus-dev/toolbus/internal/config"
)

// defaultBridgeAddr is where the webhook bridge listens unless told otherwise.
const defaultBridgeAddr = "127.0.0.1:8088"

func newBridgeCmd(a *app) *cobra.Command {
	var addr, configPath, hooksPath, logLevel string
	cmd := &cobra.Command{
		Use:   "bridge",
		Short: "run the webhook bridge: POST /hooks/<name> → events, wake-ups or tool calls",
		Long: `Run the webhook bridge alone (toolbus serve runs one): POST /hooks/<name> is
checked (bearer token or HMAC signature) and becomes an event on
events.webhook.<name>, an agent's wake-up or a tool call, as the hook says.
SIGHUP re-reads the hooks (--hooks FILE, else the config file's).`,
		Example: `  toolbus bridge --addr 127.0.0.1:8088 --config toolbus.yaml
  toolbus bridge --hooks hooks.json --nats-url nats://nats1:4222`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkLogLevel(logLevel); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), logLevel)
			cfg, err := loadConfig(configPath, nil)
			if err != nil {
				return err
			}
			if addr != "" {
				cfg.Bridge.Addr = addr
			}
			rl := newReloader(configPath, cfg, log)
			defer rl.stop()
			rl.hooksPath, rl.bridgeAddr = hooksPath, addr
			hooks, src, err := loadHooks(cfg, hooksPath)
			if err != nil {
				return err
			}
			if len(hooks) == 0 {
				return usagef("no hooks: add a hooks: section to %s or pass --hooks FILE", config.DefaultFile)
			}
			listen := cfg.Bridge.Addr
			if listen == "" || listen == "off" {
				listen = defaultBridgeAddr
			}
			ccfg, err := a.resolve(cfg.NATS.URL)
			if err != nil {
				return err
			}
			// No reconnect buffer: a publish while disconnected fails at once
			// (503) instead of being sent later for a request already refused.
			nc, js, err := dial(ccfg, "toolbus-bridge", log, nats.ReconnectBufSize(-1))
			if err != nil {
				return err
			}
			defer nc.Close()
			b, err := bridge.New(js, hooks, log)
			if err != nil {
				return fmt.Errorf("%s: %w", src, err)
			}
			// SIGHUP reloads the hooks (of --hooks FILE, else the config's).
			rl.bridge = b
			svc := &services{}
			svc.run(cmd.Context(), "bridge", func(ctx context.Context) error { return b.Run(ctx, listen) })
			svc.run(cmd.Context(), "reload", rl.run)
			return svc.wait()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&addr, "addr", "", "listen address (default config bridge.addr, else "+defaultBridgeAddr+")")
	fs.StringVar(&configPath, "config", "", "config file with a hooks: section (default ./toolbus.yaml if present)")
	fs.StringVar(&hooksPath, "hooks", "", "a JSON array of hooks, instead of the config file's hooks: section")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
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
