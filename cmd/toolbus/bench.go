package main

import (
	"bytes"
	"context"
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
		summary: "measure calls/s, p50/p99 and serve-side CPU and RSS through the bus, from an agent in another process, against direct mcp-go calls",
		usage:   "toolbus bench [--concurrency 1,16,64,256] [--sizes 100,10240,1048576] [--duration 1s] [--rounds 3] | --soak 10m | --inflight 10000",
	}
	c.run = func(ctx context.Context, args []string) error {
		fs := newFlags(c)
		levels := fs.String("concurrency", "1,16,64,256", "comma-separated concurrency levels")
		sizes := fs.String("sizes", "100,10240,1048576", "comma-separated argument (and echo result) sizes in bytes")
		tools := fs.String("tools", "echo,echo_plain", "bus tools: echo is annotated read-only, echo_plain has no annotations")
		dur := fs.Duration("duration", time.Second, "measuring time per path and round")
		rounds := fs.Int("rounds", 3, "rounds the paths take turns; each row is the median round")
		proto := fs.String("protocol", "2025-11-25", "MCP protocol version for both paths")
		syncAlways := fs.Bool("sync-always", false, "fsync every JetStream write before its PubAck (measures the cost of durability against power loss)")
		only := fs.String("only", "", "measure one path only: direct or bus (for profiling)")
		cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the serve side to this file")
		memprofile := fs.String("memprofile", "", "write a heap profile of the serve side to this file (end of --soak; mid --inflight)")
		soak := fs.Duration("soak", 0, "instead of the table: run concurrency 64 for this long, sampling the serve side's RSS")
		every := fs.Duration("sample-every", 10*time.Second, "--soak: sampling interval")
		inflight := fs.Int("inflight", 0, "instead of the table: publish this many calls of a 2s sleep at once and report time and peak RSS")
		workers := fs.Int("worker-concurrency", 0, "worker.concurrency of the serve side (default serve's; --inflight: the burst)")
		ackPending := fs.Int("max-ack-pending", 0, "worker.max_ack_pending of the serve side (default serve's; --inflight: the burst)")
		srvConc := fs.Int("server-concurrency", 0, "max_concurrency of the demo server (default serve's; --inflight: the burst)")
		resultMaxBytes := fs.Int64("result-max-bytes", 0, "nats.result_max_bytes of the serve side (default serve's; -1 unlimited)")
		h2c := fs.Bool("h2c", false, "the serve side calls the MCP server over HTTP/2 without TLS (experiment)")
		doc := fs.String("doc", "", "write the output between the <!-- bench:table:begin/end --> (or soak, inflight) markers of this file instead of stdout")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("unexpected arguments %q", fs.Args())
		}
		o := bench.Options{Duration: *dur, ProtocolVersion: *proto, Only: *only, SyncAlways: *syncAlways, Rounds: *rounds,
			Soak: *soak, SampleEvery: *every, Inflight: *inflight, HeapProfile: *memprofile, ServerConcurrency: *srvConc, Progress: os.Stderr}
		o.Worker.Concurrency, o.Worker.MaxAckPending = *workers, *ackPending
		o.Streams.ResultMaxBytes = *resultMaxBytes
		o.H2C = *h2c
		var err error
		if o.Concurrency, err = positiveInts("concurrency", *levels); err != nil {
			return err
		}
		if o.Sizes, err = positiveInts("sizes", *sizes); err != nil {
			return err
		}
		o.Tools = strings.Split(*tools, ",")
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
		var out bytes.Buffer
		if err := bench.Run(ctx, o, &out); err != nil {
			return err
		}
		if *doc == "" {
			_, err := os.Stdout.Write(out.Bytes())
			return err
		}
		section := "table"
		switch {
		case *soak > 0:
			section = "soak"
		case *inflight > 0:
			section = "inflight"
		}
		return bench.ReplaceSection(*doc, section, out.String())
	}
	register(c)

	// The load generator and the MCP server of `toolbus bench` run as this
	// hidden command, so the agent is another process, as in real life.
	register(&command{name: bench.LoadgenCommand, hidden: true, run: func(_ context.Context, args []string) error {
		if code := bench.LoadgenMain(args, os.Stdout); code != 0 {
			return exitError{code}
		}
		return nil
	}})
}

func positiveInts(flag, list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return nil, usagef("--%s: %q is not a positive number", flag, s)
		}
		out = append(out, n)
	}
	return out, nil
}
