// Package bench measures toolbus as agents see it. The parent process is
// the serve side, as `toolbus serve` runs it: embedded NATS, the catalog
// and a worker with serve's defaults. The MCP server (the demo server over
// streamable HTTP) and the load generator are each a process of their own,
// started from the current executable's hidden `bench-loadgen` command: the
// load generator connects over loopback TCP and speaks the README's wire
// protocol, and beside it a direct mcp-go client calls the same MCP server.
// So the CPU and memory the parent reports are the serve side's alone.
package bench

import (
	"bufio"
	"context"
	"encoding/json"

	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/catalogsync"
	"github.com/toolbus-dev/toolbus/internal/frontdoor"
	"github.com/toolbus-dev/toolbus/internal/mcppool"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/worker"
)

// Options sizes a run. Zero values take the defaults in brackets.
type Options struct {
	// Concurrency levels [1, 16, 64, 256].
	Concurrency []int
	// Sizes of the arguments (and so of echo's result) in bytes
	// [100, 10 KB, 1 MB].
	Sizes []int
	// Tools on the bus path ["echo" (annotated read-only), "echo_plain"
	// (no annotations: a result lookup and a ledger mark per call)]. The
	// direct path calls the first.
	Tools []string
	// Duration measured per path and round [1s], after a warm-up of a fifth.
	Duration time.Duration
	// Rounds the paths take turns [3]; each row is the median round.
	Rounds int
	// Only measures these paths, comma-separated: "direct", "floor",
	// "bus", "frontdoor", "mcp-proxy" [all but floor, which is measured
	// only when named].
	Only string
	// MCPProxy, when set, is an mcp-proxy binary (TBXark/mcp-proxy): the
	// mcp-proxy path runs it in front of the demo server, an MCP proxy
	// without durability to compare with.
	MCPProxy string
	// ServeBins, when set, are toolbus binaries each run as `BIN serve`
	// (embedded NATS on a free port, the bridge off, the demo server in its
	// config), measured in a second table on echo_plain at each size and
	// concurrency with their own load generator: old against new serve
	// in one run. Their CPU and RSS come from /proc/<pid>.
	ServeBins []string
	// MemoryLimit is the serve side's soft memory limit, as serve's
	// --memory-limit, given to each ServeBins process; "" is serve's
	// default. (The caller applies it to this process's serve side.)
	MemoryLimit string
	// ProtocolVersion of the MCP sessions [2025-11-25].
	ProtocolVersion string
	// SyncAlways fsyncs every JetStream write (see broker.EmbeddedConfig).
	SyncAlways bool

	// Worker, ServerConcurrency and Streams configure the serve side;
	// zero values are serve's defaults.
	Worker            worker.Config
	ServerConcurrency int
	Streams           streams.Options
	// H2C makes the serve side call the MCP server over HTTP/2 without TLS
	// (one multiplexed connection) instead of HTTP/1.1 (a connection per
	// call in flight): an experiment for the pool's transport.
	H2C bool

	// Soak, when set, replaces the table with a run of this length at
	// SoakConcurrency [64] on echo_plain, sampling the serve side's RSS
	// every SampleEvery [10s] and printing the slope.
	Soak            time.Duration
	SoakConcurrency int
	SampleEvery     time.Duration
	// Inflight, when set, replaces the table with a burst of this many calls
	// of sleep (SleepFor [2s]) published at once, with the worker's
	// concurrency, max ack pending and the server's max_concurrency raised
	// to it unless set: time to complete and peak RSS of the serve side.
	Inflight int
	SleepFor time.Duration
	// InflightTool is the burst's tool [sleep]: sleep_plain is the same
	// without annotations (a ledger mark per call, as most servers' tools).
	InflightTool string
	// HeapProfile, when set, is where the serve side's heap profile is
	// written: at the end of a soak, with all calls running in an
	// Inflight burst.
	HeapProfile string

	// Exe runs the load generator and the MCP server as
	// `Exe bench-loadgen ...` [os.Executable()].
	Exe string
	// Progress receives a line per measurement [discarded].
	Progress io.Writer
}

func (o *Options) setDefaults() error {
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 16, 64, 256}
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int{100, 10 << 10, 1 << 20}
	}
	if len(o.Tools) == 0 {
		o.Tools = []string{"echo", "echo_plain"}
	}
	if o.Duration <= 0 {
		o.Duration = time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.ProtocolVersion == "" {
		o.ProtocolVersion = mcp.ProtocolVersion20251125
	}
	if o.SoakConcurrency <= 0 {
		o.SoakConcurrency = 64
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 10 * time.Second
	}
	if o.InflightTool == "" {
		o.InflightTool = "sleep"
	}
	if o.SleepFor <= 0 {
		o.SleepFor = 2 * time.Second
	}
	if o.Inflight > 0 {
		if o.Worker.Concurrency <= 0 {
			o.Worker.Concurrency = o.Inflight
		}
		if o.Worker.MaxAckPending <= 0 {
			o.Worker.MaxAckPending = o.Inflight
		}
		if o.ServerConcurrency <= 0 {
			o.ServerConcurrency = o.Inflight
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the executable to run the load generator: %w", err)
		}
		o.Exe = exe
	}
	for _, bin := range append([]string{o.MCPProxy}, o.ServeBins...) {
		if fi, err := os.Stat(bin); bin != "" && (err != nil || fi.IsDir() || fi.Mode()&0o111 == 0) {
			return fmt.Errorf("%s is not an executable file", bin)
		}
	}
	for _, p := range strings.Split(o.Only, ",") {
		switch p {
		case "", "bus", "direct", "floor", "frontdoor":
		case "mcp-proxy":
			if o.MCPProxy == "" {
				return fmt.Errorf("only: mcp-proxy needs the path of an mcp-proxy binary")
			}
		default:
			return fmt.Errorf("only: %q is not direct, floor, bus, frontdoor or mcp-proxy", p)
		}
	}
	return nil
}

// Row is one measurement, the median round of a path at a size and
// concurrency.
type Row struct {
	Path        string // "direct", "floor", "floor_mark", "bus", "frontdoor", "mcp-proxy", "serve <bin>"
	Tool        string
	Size        int
	Concurrency int
	Calls       int // summed over rounds
	PerSec      float64
	P50, P99    time.Duration
	Errors      int64  // summed over rounds
	FirstErr    string // the first error's text, when there were errors
	// ServeCPU is the serve side's CPU time per call (median round): the
	// bench process's for floor, bus and frontdoor, mcp-proxy's for mcp-proxy, the
	// serve process's for a --serve-bin.
	ServeCPU time.Duration
	// RSS of that process after the round.
	RSS int64
}

// Run starts the serve side, the MCP server and the load generator, runs
// the measurements o asks for, and writes the table (or the soak or
// in-flight report) to w as Markdown.
func Run(ctx context.Context, o Options, w io.Writer) error {
	if err := o.setDefaults(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	mcpURL, stopDemo, err := startDemo(ctx, o.Exe)
	if err != nil {
		return err
	}
	defer stopDemo()
	st, err := startServe(ctx, o, mcpURL)
	if err != nil {
		return err
	}
	defer st.close()
	want := func(p string) bool { return o.Only == "" || slices.Contains(strings.Split(o.Only, ","), p) }
	var proxyURL string
	var proxyPID int
	if o.MCPProxy != "" && want("mcp-proxy") && o.Soak == 0 && o.Inflight == 0 {
		var stopProxy func()
		if proxyURL, proxyPID, stopProxy, err = startProxy(ctx, o.MCPProxy, mcpURL); err != nil {
			return err
		}
		defer stopProxy()
	}
	lg, err := startLoadgen(ctx, o, st.emb.ClientURL(), mcpURL, "--frontdoor", st.fdURL, "--mcp-proxy", proxyURL)
	if err != nil {
		return err
	}
	defer lg.close()

	switch {
	case o.Soak > 0:
		return soak(ctx, o, st, lg, w)
	case o.Inflight > 0:
		if err := inflight(ctx, o, st, lg, w); err != nil || len(o.ServeBins) == 0 {
			return err
		}
		lg.close()
		st.close()
		return inflightBins(ctx, o, mcpURL, w)
	}
	self := func() int64 { rss, _ := memStatus(); return rss }
	var paths []path
	if want("direct") {
		paths = append(paths, path{path: "direct", tool: o.Tools[0], lg: lg, cpu: cpuTime, rss: self})
	}
	var fl *floor
	if slices.Contains(strings.Split(o.Only, ","), floorPath) {
		// The minimal worker (floor.go) beside toolbus's, on the same NATS
		// server and connection: floor_mark for a tool that gets a ledger
		// mark, as echo_plain.
		if fl, err = startFloor(ctx, st.js, o, mcpURL); err != nil {
			return err
		}
		defer fl.close()
		for _, t := range o.Tools {
			name := floorPath
			if fl.marks(t) {
				name = floorPath + "_mark"
			}
			paths = append(paths, path{path: name, via: floorPath, tool: t, lg: lg, cpu: cpuTime, rss: self})
		}
	}
	if want("bus") {
		for _, t := range o.Tools {
			paths = append(paths, path{path: "bus", tool: t, lg: lg, cpu: cpuTime, rss: self})
		}
	}
	if want("frontdoor") {
		paths = append(paths, path{path: "frontdoor", tool: o.Tools[0], call: frontdoor.ToolName(st.server.Name, o.Tools[0]), lg: lg, cpu: cpuTime, rss: self})
	}
	if proxyURL != "" {
		paths = append(paths, path{path: "mcp-proxy", tool: o.Tools[0], lg: lg,
			cpu: func() time.Duration { return cpuTimeOf(proxyPID) }, rss: func() int64 { rss, _ := memStatusOf(proxyPID); return rss }})
	}
	rows, err := table(ctx, o, paths)
	if err != nil {
		return err
	}
	Print(w, rows)
	if len(o.ServeBins) == 0 {
		return nil
	}
	// Stop the in-process serve side's work before measuring the others.
	lg.close()
	fl.close()
	st.close()
	var spaths []path
	for i, bin := range o.ServeBins {
		sp, slg, err := startServeAgent(ctx, o, bin, mcpURL, fmt.Sprintf("bench%d", i))
		if err != nil {
			return err
		}
		defer sp.close()
		defer slg.close()
		spaths = append(spaths, path{path: "serve " + serveLabel(o.ServeBins, i), via: "bus", tool: "echo_plain", lg: slg,
			cpu: func() time.Duration { return cpuTimeOf(sp.pid) }, rss: func() int64 { rss, _ := memStatusOf(sp.pid); return rss }})
	}
	srows, err := table(ctx, o, spaths)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n")
	Print(w, srows)
	return nil
}

// serve is the serve side running in this process.
type serve struct {
	dir    string
	emb    *broker.Embedded
	nc     *nats.Conn
	js     jetstream.JetStream
	pool   *mcppool.Pool
	cat    *catalog.Catalog
	wk     *worker.Worker
	stopW  context.CancelFunc
	wdone  chan error
	wcfg   worker.Config
	server registry.Server
	fd     *frontdoor.Gateway
	fdURL  string
	stopFD context.CancelFunc
	fdDone chan error
}

func startServe(ctx context.Context, o Options, mcpURL string) (st *serve, err error) {
	log := zerolog.Nop()
	st = &serve{}
	started := st // a failed start returns nil: close what it started
	defer func() {
		if err != nil {
			started.close()
		}
	}()
	if st.dir, err = os.MkdirTemp("", "toolbus-bench-"); err != nil {
		return nil, err
	}
	if st.emb, err = broker.StartEmbedded(broker.EmbeddedConfig{Port: -1, DataDir: filepath.Join(st.dir, "data"), SyncAlways: o.SyncAlways}, log); err != nil {
		return nil, err
	}
	// The worker uses an in-process connection, as `toolbus serve` does.
	if st.nc, err = st.emb.Connect("bench-serve"); err != nil {
		return nil, err
	}
	if st.js, err = jetstream.New(st.nc); err != nil {
		return nil, err
	}
	st.wcfg = o.Worker
	if err = broker.Provision(ctx, st.js, o.Streams, st.wcfg.ConsumerConfig()); err != nil {
		return nil, err
	}
	st.server = registry.Server{Name: "demo", Transport: registry.TransportHTTP, URL: mcpURL, ProtocolVersion: o.ProtocolVersion, MaxConcurrency: o.ServerConcurrency}
	var popts []mcppool.Option
	if o.H2C {
		popts = append(popts, mcppool.WithHTTPClients(func(int) *http.Client { return h2cClient() }))
	}
	st.pool = mcppool.New(log, popts...)
	st.pool.Upsert(st.server)
	reg, err := registry.New(ctx, st.js, registry.WithoutResyncOnPut())
	if err != nil {
		return nil, err
	}
	if err = reg.Put(ctx, st.server); err != nil {
		return nil, err
	}
	if _, err = catalogsync.New(st.js, reg, catalogsync.Config{NoListen: true}).SyncServer(ctx, st.server.Name); err != nil {
		return nil, fmt.Errorf("sync the demo server: %w", err)
	}
	if st.cat, err = catalog.New(ctx, st.js); err != nil {
		return nil, err
	}
	if waiting := st.cat.WaitFirstSync(ctx, []string{st.server.Name}); len(waiting) > 0 {
		return nil, fmt.Errorf("catalog of %v not read", waiting)
	}
	st.wk = worker.New(st.nc, st.js, st.pool, st.wcfg, log, worker.WithCatalog(st.cat))
	wctx, stop := context.WithCancel(ctx)
	st.stopW, st.wdone = stop, make(chan error, 1)
	go func() { st.wdone <- st.wk.Run(wctx) }()
	// The MCP front door, as serve runs it on its own loopback listener
	// (mcp.listen) without tokens.
	if st.fd, err = frontdoor.New(ctx, st.nc, frontdoor.Config{}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	st.fdURL = "http://" + ln.Addr().String() + st.fd.Path()
	fctx, stopFD := context.WithCancel(ctx)
	st.stopFD, st.fdDone = stopFD, make(chan error, 1)
	go func() { st.fdDone <- st.fd.Serve(fctx, ln) }()
	return st, nil
}

func (st *serve) close() {
	if st.stopFD != nil {
		st.stopFD()
		<-st.fdDone
		st.stopFD = nil
	}
	if st.fd != nil {
		st.fd.Close()
		st.fd = nil
	}
	if st.stopW != nil {
		st.stopW()
		<-st.wdone
		st.stopW = nil
	}
	if st.cat != nil {
		st.cat.Stop()
		st.cat = nil
	}
	if st.pool != nil {
		st.pool.Close()
		st.pool = nil
	}
	if st.nc != nil {
		st.nc.Close()
		st.nc = nil
	}
	if st.emb != nil {
		st.emb.Shutdown()
		st.emb = nil
	}
	if st.dir != "" {
		os.RemoveAll(st.dir)
		st.dir = ""
	}
}

// h2cClient speaks HTTP/2 without TLS only (prior knowledge).
func h2cClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
	t.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1 << 20}
	return &http.Client{Transport: t}
}

// child is a bench-loadgen process and its pipes.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	done  chan error
}

func spawn(ctx context.Context, exe string, args ...string) (*child, error) {
	cmd := exec.CommandContext(ctx, exe, append([]string{LoadgenCommand}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", exe, LoadgenCommand, err)
	}
	c := &child{cmd: cmd, stdin: in, out: bufio.NewScanner(out), done: make(chan error, 1)}
	c.out.Buffer(make([]byte, 64<<10), 1<<20)
	return c, nil
}

// next reads the child's next report.
func (c *child) next() (report, error) {
	if !c.out.Scan() {
		err := c.out.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return report{}, fmt.Errorf("%s stopped: %w", LoadgenCommand, err)
	}
	var r report
	if err := json.Unmarshal(c.out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("%s said %q: %w", LoadgenCommand, c.out.Text(), err)
	}
	return r, nil
}

// close ends the child by closing its stdin, and waits for it.
func (c *child) close() {
	c.stdin.Close()
	_ = c.cmd.Wait()
}

func startDemo(ctx context.Context, exe string) (string, func(), error) {
	c, err := spawn(ctx, exe, "--serve-demo")
	if err != nil {
		return "", nil, err
	}
	r, err := c.next()
	if err != nil || r.URL == "" {
		c.close()
		return "", nil, fmt.Errorf("demo MCP server: %v", err)
	}
	return r.URL, c.close, nil
}

func startLoadgen(ctx context.Context, o Options, natsURL, mcpURL string, more ...string) (*child, error) {
	return spawn(ctx, o.Exe, append([]string{"--nats", natsURL, "--mcp", mcpURL, "--protocol", o.ProtocolVersion}, more...)...)
}

// do sends a job and returns its report with the CPU time cpuTime counts
// (the serve side's) from the start of the measured part to its end.
func (c *child) do(j job, cpuTime func() time.Duration, onPublished func()) (report, time.Duration, error) {
	data, _ := json.Marshal(j)
	if _, err := c.stdin.Write(append(data, '\n')); err != nil {
		return report{}, 0, fmt.Errorf("%s: %w", LoadgenCommand, err)
	}
	var cpu0 time.Duration
	for {
		r, err := c.next()
		if err != nil {
			return r, 0, err
		}
		switch r.Event {
		case "start":
			cpu0 = cpuTime()
		case "published":
			if onPublished != nil {
				onPublished()
			}
		case "done":
			return r, cpuTime() - cpu0, nil
		}
	}
}

// echoArgs returns echo's arguments object, size bytes long.
func echoArgs(size int) string {
	const frame = len(`{"message":""}`)
	n := max(size-frame, 1)
	return `{"message":"` + strings.Repeat("x", n) + `"}`
}

// path is one way of calling the demo server measured in a table.
type path struct {
	path, tool string
	call       string // the tool's name on this path [tool]
	via        string // the load generator's job path [path]
	lg         *child
	cpu        func() time.Duration // CPU of the process serving the path
	rss        func() int64         // and its RSS
}

func table(ctx context.Context, o Options, paths []path) ([]Row, error) {
	// A path still starting (the front door reading the catalog, mcp-proxy
	// connecting, a serve process syncing) answers before it is measured.
	for _, p := range paths {
		if p.path == "direct" {
			continue
		}
		r, _, err := p.lg.do(job{Path: p.jobPath(), Tool: p.name(), Args: echoArgs(100), Probe: true}, p.cpu, nil)
		if err != nil {
			return nil, err
		}
		if r.Errors > 0 {
			return nil, fmt.Errorf("%s path: no call succeeded in 30s: %s", p.path, r.FirstErr)
		}
	}
	var rows []Row
	for _, size := range o.Sizes {
		args := echoArgs(size)
		for _, conc := range o.Concurrency {
			rounds := make([][]Row, len(paths))
			for range o.Rounds {
				for i, p := range paths {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					r, cpu, err := p.lg.do(job{Path: p.jobPath(), Tool: p.name(), Args: args, Conc: conc, Warmup: o.Duration / 5, Duration: o.Duration}, p.cpu, nil)
					if err != nil {
						return nil, err
					}
					row := Row{Path: p.path, Tool: p.tool, Size: size, Concurrency: conc, Calls: r.Calls,
						PerSec: float64(r.Calls) / r.Elapsed.Seconds(), P50: r.P50, P99: r.P99, Errors: r.Errors, FirstErr: r.FirstErr, RSS: p.rss()}
					if r.Calls > 0 {
						row.ServeCPU = cpu / time.Duration(r.Calls)
					}
					fmt.Fprintf(o.Progress, "%-17s %-10s %8s c=%-4d %8.0f calls/s p50 %-10v errors %d %s\n", p.path, p.tool, sizeName(size), conc, row.PerSec, r.P50.Round(time.Microsecond), r.Errors, r.FirstErr)
					rounds[i] = append(rounds[i], row)
				}
			}
			for _, rs := range rounds {
				rows = append(rows, median(rs))
			}
		}
	}
	return rows, nil
}

func (p path) jobPath() string {
	if p.via != "" {
		return p.via
	}
	return p.path
}

func (p path) name() string {
	if p.call != "" {
		return p.call
	}
	return p.tool
}

// median returns the round with the median throughput, its calls and
// errors summed over all rounds.
func median(rs []Row) Row {
	sorted := append([]Row(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].PerSec < sorted[j].PerSec })
	m := sorted[len(sorted)/2]
	m.Calls, m.Errors = 0, 0
	for _, r := range rs {
		m.Calls += r.Calls
		m.Errors += r.Errors
		if m.FirstErr == "" {
			m.FirstErr = r.FirstErr
		}
	}
	return m
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// Print writes rows as a Markdown table: each row relative to the first
// row of its size and concurrency (direct, or the first --serve-bin).
func Print(w io.Writer, rows []Row) {
	first := "direct"
	if len(rows) > 0 {
		first = rows[0].Path
	}
	fmt.Fprintf(w, "| size | conc | path | tool | calls/s | p50 | p99 | vs %s | serve CPU/call | serve RSS | errors |\n", first)
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	var base Row
	for _, r := range rows {
		rel := ""
		if base.Size != r.Size || base.Concurrency != r.Concurrency || base.Path == "" {
			base = r
		} else if base.PerSec > 0 && r.Calls > 0 {
			d := (r.P50 - base.P50).Round(10 * time.Microsecond)
			sign := "+"
			if d < 0 {
				sign, d = "−", -d
			}
			rel = fmt.Sprintf("%.2f×, p50 %s%v", r.PerSec/base.PerSec, sign, d)
		}
		cpu := "–"
		if r.Path != "direct" && r.ServeCPU > 0 {
			cpu = fmt.Sprintf("%.3f ms", float64(r.ServeCPU)/1e6)
		}
		errs := fmt.Sprint(r.Errors)
		if r.Errors > 0 {
			errs += ": " + strings.ReplaceAll(truncate(r.FirstErr, 120), "|", "/")
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %.0f | %v | %v | %s | %s | %.0f MiB | %s |\n",
			sizeName(r.Size), r.Concurrency, r.Path, r.Tool, r.PerSec, r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), rel, cpu, mb(r.RSS), errs)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ReplaceSection rewrites the part of the file at path between the lines
// `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` with content.
func ReplaceSection(path, name, content string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	begin, end := "<!-- bench:"+name+":begin -->\n", "<!-- bench:"+name+":end -->"
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q … %q section to replace", path, strings.TrimSpace(begin), end)
	}
	s = s[:i+len(begin)] + content + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
