package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/bench"
)

func newBenchCmd(*app) *cobra.Command {
	var (
		levels, proto, only, cpuprofile string
		dur                             time.Duration
		rounds                          int
		syncAlways                      bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure calls/s and p50/p99 through the bus against direct mcp-go calls to the same demo server",
		Long: `Measure calls/s and p50/p99 through the bus against direct mcp-go calls to the
same demo server: an embedded NATS, the demo MCP server over streamable HTTP, a
worker. The two paths take turns; each row is the median round. With the
OTEL_* variables of tracing set (see README, Tracing), the bus path is traced,
to measure what tracing costs.`,
		Example: `  toolbus bench
  toolbus bench --concurrency 1,16,64 --duration 5s --rounds 5
  toolbus bench --only bus --cpuprofile bus.pprof`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := bench.Options{Duration: dur, ProtocolVersion: proto, Only: only, SyncAlways: syncAlways, Rounds: rounds}
			for _, s := range strings.Split(levels, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n <= 0 {
					return usagef("--concurrency: %q is not a positive number", s)
				}
				o.Concurrency = append(o.Concurrency, n)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "toolbus bench: embedded NATS, demo MCP server over streamable HTTP (MCP %s), median of %d rounds of %v, paths taking turns\n", proto, rounds, dur)
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
			// OTEL_EXPORTER_OTLP_ENDPOINT (or the other variables of
			// serve) traces the bus path, to measure what tracing costs.
			tp, stopTracing, err := startTracing(cmd.Context(), "bench", newLogger(cmd.ErrOrStderr(), "warn"))
			if err != nil {
				return err
			}
			defer stopTracing()
			if tp != nil {
				o.Tracer = tp
				fmt.Fprintln(cmd.ErrOrStderr(), "tracing the bus path (OTEL_* set)")
			}
			rows, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			bench.Print(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&levels, "concurrency", "1,64", "comma-separated concurrency levels")
	fs.DurationVar(&dur, "duration", 2*time.Second, "measuring time per round")
	fs.IntVar(&rounds, "rounds", 3, "rounds the two paths take turns; each row is the median round")
	fs.StringVar(&proto, "protocol", "2025-11-25", "MCP protocol version for both paths")
	fs.BoolVar(&syncAlways, "sync-always", false, "fsync every JetStream write before its PubAck (measures the cost of durability against power loss)")
	fs.StringVar(&only, "only", "", "measure one path only: direct or bus (for profiling)")
	fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file")
	return cmd
}
