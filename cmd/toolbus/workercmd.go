package main

import "context"

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
		log, cfg, err := rf.start(fs, conn, args)
		if err != nil {
			return err
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
