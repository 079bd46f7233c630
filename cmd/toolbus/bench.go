package main

import (
	"bytes"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/bench"
)

func newBenchCmd(a *app) *cobra.Command {
	var (
		levels, sizes, tools, proto, only, cpuprofile, memprofile, doc, memLimit, section, proxy, inflightTool string
		serveBins                                                                                              []string
		dur, soak, every, sleep                                                                                time.Duration
		rounds, inflight, workers, ackPending, srvConc                                                         int
		resultMaxBytes                                                                                         int64
		syncAlways, h2c                                                                                        bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure calls/s, p50/p99 and serve-side CPU and RSS through the bus, from an agent in another process, against direct mcp-go calls",
		Long: `Measure calls/s, p50/p99 and the serve side's CPU and RSS through the bus,
from an agent in another process (the hidden bench-loadgen command), against
direct mcp-go calls to the same demo server, through the MCP front door (an
mcp-go client of it in the agent process) and, with --mcp-proxy, through
TBXark/mcp-proxy. --only floor adds a minimal JetStream worker with the same
durability beside toolbus's (floor, and floor_mark with a ledger mark per
call): JetStream's own cost. --serve-bin runs toolbus binaries as ` + "`BIN serve`" + ` processes
and adds a table of the bus on echo_plain through each (old against new
serve in one run). The paths take turns; each row is the median round. --soak and --inflight replace the table with a long run at
concurrency 64 sampling RSS, or one burst of calls in flight at once; with
--serve-bin, --inflight adds a table of the same burst through each binary's
serve (a fresh process per burst, the binaries taking turns for --rounds).`,
		Example: `  toolbus bench
  toolbus bench --concurrency 1,16,64 --sizes 100 --mcp-proxy /path/to/mcp-proxy --serve-bin /tmp/toolbus-old --serve-bin bin/toolbus
  toolbus bench --concurrency 1,64 --sizes 100 --duration 2s --rounds 5
  toolbus bench --soak 10m --sample-every 30s
  toolbus bench --inflight 10000
  toolbus bench --inflight 10000 --serve-bin /tmp/toolbus-old --serve-bin bin/toolbus
  toolbus bench --doc docs/benchmarks.md`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := bench.Options{Duration: dur, ProtocolVersion: proto, Only: only, SyncAlways: syncAlways, Rounds: rounds,
				Soak: soak, SampleEvery: every, Inflight: inflight, SleepFor: sleep, InflightTool: inflightTool, HeapProfile: memprofile, ServerConcurrency: srvConc, Progress: cmd.ErrOrStderr()}
			o.Worker.Concurrency, o.Worker.MaxAckPending = workers, ackPending
			o.Streams.ResultMaxBytes = resultMaxBytes
			o.H2C = h2c
			o.MCPProxy, o.ServeBins, o.MemoryLimit = proxy, serveBins, memLimit
			switch {
			case soak > 0 && len(serveBins) > 0:
				return usagef("--serve-bin measures the table and --inflight, not --soak (whose serve side runs in this process)")
			case inflight > 0 && inflightTool != "sleep" && inflightTool != "sleep_plain":
				return usagef("--inflight-tool %q: want sleep or sleep_plain", inflightTool)
			}
			// The serve side runs in this process: the limit serve sets.
			if _, err := applyMemoryLimit(a.getenv, memLimit); err != nil {
				return usagef("--memory-limit: %v", err)
			}
			var err error
			if o.Concurrency, err = positiveInts("concurrency", levels); err != nil {
				return err
			}
			if o.Sizes, err = positiveInts("sizes", sizes); err != nil {
				return err
			}
			o.Tools = strings.Split(tools, ",")
			if cpuprofile != "" {
				f, err := os.Create(cpuprofile)
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
			if err := bench.Run(cmd.Context(), o, &out); err != nil {
				return err
			}
			if doc == "" {
				_, err := cmd.OutOrStdout().Write(out.Bytes())
				return err
			}
			switch {
			case section != "":
			case soak > 0:
				section = "soak"
			case inflight > 0:
				section = "inflight"
			default:
				section = "table"
			}
			return bench.ReplaceSection(doc, section, out.String())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&levels, "concurrency", "1,16,64,256", "comma-separated concurrency levels")
	fs.StringVar(&sizes, "sizes", "100,10240,1048576", "comma-separated argument (and echo result) sizes in bytes")
	fs.StringVar(&tools, "tools", "echo,echo_plain", "bus tools: echo is annotated read-only, echo_plain has no annotations")
	fs.DurationVar(&dur, "duration", time.Second, "measuring time per path and round")
	fs.IntVar(&rounds, "rounds", 3, "rounds the paths take turns; each row is the median round")
	fs.StringVar(&proto, "protocol", "2025-11-25", "MCP protocol version for both paths")
	fs.BoolVar(&syncAlways, "sync-always", false, "fsync every JetStream write before its PubAck (measures the cost of durability against power loss)")
	fs.StringVar(&only, "only", "", "measure these paths only, comma-separated: direct, floor (a minimal JetStream worker, only when named), bus, frontdoor, mcp-proxy")
	fs.StringVar(&proxy, "mcp-proxy", "", "an mcp-proxy binary (TBXark/mcp-proxy): add the mcp-proxy path, the demo server through it")
	fs.StringArrayVar(&serveBins, "serve-bin", nil, "a toolbus binary to run as BIN serve and measure on echo_plain (with --inflight: the burst) in a second table (repeatable: old against new)")
	fs.StringVar(&section, "section", "", "--doc: the section to write (default table, soak or inflight)")
	fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the serve side to this file")
	fs.StringVar(&memprofile, "memprofile", "", "write a heap profile of the serve side to this file (end of --soak; mid --inflight)")
	fs.DurationVar(&soak, "soak", 0, "instead of the table: run concurrency 64 for this long, sampling the serve side's RSS")
	fs.DurationVar(&every, "sample-every", 10*time.Second, "--soak: sampling interval")
	fs.IntVar(&inflight, "inflight", 0, "instead of the table: publish this many calls of a 2s sleep at once and report time and peak RSS")
	fs.DurationVar(&sleep, "sleep", 2*time.Second, "--inflight: how long each call sleeps (longer: every call is in flight at the peak)")
	fs.StringVar(&inflightTool, "inflight-tool", "sleep", "--inflight: the demo tool of the burst: sleep (annotated idempotent) or sleep_plain (no annotations: a ledger mark per call, as most servers' tools)")
	fs.IntVar(&workers, "worker-concurrency", 0, "worker.concurrency of the serve side (default serve's; --inflight: the burst)")
	fs.IntVar(&ackPending, "max-ack-pending", 0, "worker.max_ack_pending of the serve side (default serve's; --inflight: the burst)")
	fs.IntVar(&srvConc, "server-concurrency", 0, "max_concurrency of the demo server (default serve's; --inflight: the burst)")
	fs.Int64Var(&resultMaxBytes, "result-max-bytes", 0, "nats.result_max_bytes of the serve side (default serve's; -1 unlimited)")
	fs.BoolVar(&h2c, "h2c", false, "the serve side calls the MCP server over HTTP/2 without TLS (experiment)")
	fs.StringVar(&memLimit, "memory-limit", "", `soft memory limit of the serve side when GOMEMLIMIT is unset, as serve's --memory-limit, also given to each --serve-bin (default 192MiB; "off": none)`)
	fs.StringVar(&doc, "doc", "", "write the output between the <!-- bench:table:begin/end --> (or soak, inflight) markers of this file instead of stdout")
	return cmd
}

// newBenchLoadgenCmd runs the load generator and the MCP server of `toolbus
// bench`, so the agent is another process, as in real life.
func newBenchLoadgenCmd(*app) *cobra.Command {
	return &cobra.Command{
		Use:                bench.LoadgenCommand,
		Short:              "internal: the agent side of toolbus bench",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := bench.LoadgenMain(args, cmd.OutOrStdout()); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
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
