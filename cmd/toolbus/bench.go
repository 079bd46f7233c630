package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/toolbus-dev/toolbus/internal/bench"
)

func init() {
	c := &command{
		name:    "bench",
		summary: "measure calls/s and p50/p99 through the bus against direct mcp-go calls to the same demo server",
		usage:   "toolbus bench [--concurrency 1,64] [--duration 2s] [--rounds 3]",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		levels := fs.String("concurrency", "1,64", "comma-separated concurrency levels")
		dur := fs.Duration("duration", 2*time.Second, "measuring time per round")
		rounds := fs.Int("rounds", 3, "rounds the two paths take turns; each row is the median round")
		proto := fs.String("protocol", "2025-11-25", "MCP protocol version for both paths")
		syncAlways := fs.Bool("sync-always", false, "fsync every JetStream write before its PubAck (measures the cost of durability against power loss)")
		only := fs.String("only", "", "measure one path only: direct, bus or frontdoor (for profiling)")
		cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("unexpected arguments %q", fs.Args())
		}
		o := bench.Options{Duration: *dur, ProtocolVersion: *proto, Only: *only, SyncAlways: *syncAlways, Rounds: *rounds}
		for _, s := range strings.Split(*levels, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				return usagef("--concurrency: %q is not a positive number", s)
			}
			o.Concurrency = append(o.Concurrency, n)
		}
		fmt.Fprintf(os.Stderr, "toolbus bench: embedded NATS, demo MCP server over streamable HTTP (MCP %s), median of %d rounds of %v, paths taking turns\n", *proto, *rounds, *dur)
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		rows, err := bench.Run(ctx, o)
		if err != nil {
			return err
		}
		bench.Print(os.Stdout, rows)
		return nil
	}
	register(c)
}
