package main

import (
	"context"

	"toolbus/config"
)

func init() {
	c := &command{
		name:    "worker",
		summary: "run a worker against an existing NATS (start as many as you like; they share the load)",
		usage:   "toolbus worker [flags]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		rf := addRunFlags(fs)
		conn := addConnFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("unexpected arguments %q", fs.Args())
		}
		log := newLogger(rf.logLevel)
		cfg, err := config.Load(rf.configPath)
		if err != nil {
			return err
		}
		logConfig(log, cfg)
		if !flagSet(fs, "nats-url") && cfg.NATS.URL != "" {
			conn.cfg.URL = cfg.NATS.URL
		}
		nc, _, err := conn.connect("toolbus-worker", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		return runStack(ctx, nc, cfg, rf, log, false)
	}
	register(c)
}
