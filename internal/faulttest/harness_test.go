package faulttest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Knobs shared by every scenario. AckWait is short so a call held by a
// killed worker comes back within seconds.
const (
	ackWait         = 2 * time.Second
	maxDeliver      = 5
	workerConc      = 16
	loadConc        = 32               // calls in flight from the load generator
	callTimeout     = 60 * time.Second // each call's deadline
	defaultCalls    = 1500             // SOAK_CALLS when unset
	storePollAfter  = 3 * time.Second  // no reply this long: also look in TOOL_RESULTS
	storePollEvery  = 2 * time.Second
	lateReplyWindow = 2*ackWait + time.Second // wait for late duplicate replies
)

// soakCalls is the run size from SOAK_CALLS.
func soakCalls(t *testing.T) int {
	t.Helper()
	s := os.Getenv("SOAK_CALLS")
	if s == "" {
		return defaultCalls
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("SOAK_CALLS=%q: want a positive number of calls", s)
	}
	return n
}

// budget bounds a whole scenario of n calls.
func budget(n int) time.Duration { return 3*time.Minute + time.Duration(n)*20*time.Millisecond }

// natsServerBin returns $TOOLBUS_NATS_SERVER or skips the test.
func natsServerBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("TOOLBUS_NATS_SERVER")
	if bin == "" {
		t.Skip("TOOLBUS_NATS_SERVER is not set: fault tests need a standalone nats-server; run `make test-deps` and `make test` (or set TOOLBUS_NATS_SERVER=bin/nats-server)")
	}
	if !filepath.IsAbs(bin) {
		// go test runs in the package directory; the Makefile's path is
		// relative to the repository root.
		if _, err := os.Stat(bin); err != nil {
			if abs, err := filepath.Abs(filepath.Join("..", "..", bin)); err == nil {
				bin = abs
			}
		}
	}
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Skipf("TOOLBUS_NATS_SERVER=%q is not an executable file (%v): run `make test-deps`", os.Getenv("TOOLBUS_NATS_SERVER"), err)
	}
	return bin
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- processes ----

// proc is a subprocess this test started. Only proc.kill ends it, by PID.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed when the process has exited and been reaped
	err     error         // Wait's error, set before done closes
}

// startProc starts argv with stdout and stderr appended to logPath.
func startProc(name, logPath string, argv ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "---- %s: start %s\n", time.Now().Format("15:04:05.000"), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(f, "---- %s: exited: %v\n", time.Now().Format("15:04:05.000"), cmd.ProcessState)
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process (by its PID) and waits for it to go.
func (p *proc) kill() error {
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit 10s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// tail returns the last n lines of a log file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// ---- nats-server ----

// natsProc is a standalone nats-server with JetStream file storage that a
// test can kill -9 and restart on the same port and store directory.
type natsProc struct {
	t       *testing.T
	bin     string
	name    string // server_name
	port    int
	conf    string
	store   string
	logPath string
	URL     string

	mu gosync.Mutex
	p  *proc
}

// startNATSCluster starts size nats-servers (1: a single server; 3: a
// JetStream cluster whose nodes route to each other on loopback), each
// with sync_interval: always, and waits until JetStream answers on each.
func startNATSCluster(t *testing.T, dir string, size int) []*natsProc {
	t.Helper()
	nodes := make([]*natsProc, size)
	routes := make([]string, size)
	cports := make([]int, size)
	for i := range nodes {
		sub := dir
		if size > 1 {
			sub = filepath.Join(dir, fmt.Sprintf("n%d", i+1))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		nodes[i] = &natsProc{
			t:       t,
			bin:     natsServerBin(t),
			name:    fmt.Sprintf("n%d", i+1),
			port:    testutil.FreePort(t),
			conf:    filepath.Join(sub, "nats.conf"),
			store:   filepath.Join(sub, "jetstream"),
			logPath: filepath.Join(sub, "nats.log"),
		}
		nodes[i].URL = fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].port)
		cports[i] = testutil.FreePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", cports[i])
	}
	for i, n := range nodes {
		// max_payload and the cluster have no command-line flags; the rest
		// stays on the command line so the log shows it.
		conf := fmt.Sprintf("server_name: %s\nmax_payload: 8MB\njetstream { sync_interval: always }\n", n.name)
		if size > 1 {
			conf += fmt.Sprintf("cluster { name: faulttest, listen: \"127.0.0.1:%d\", routes: [%s] }\n", cports[i], strings.Join(quoteAll(routes), ", "))
		}
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := n.Kill(); err != nil {
				t.Error(err)
			}
		})
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if err := n.waitReady(); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strconv.Quote(x)
	}
	return out
}

func (n *natsProc) start() error {
	if err := n.launch(); err != nil {
		return err
	}
	return n.waitReady()
}

func (n *natsProc) launch() error {
	p, err := startProc("nats-server", n.logPath, n.bin, "-c", n.conf,
		"-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-js", "-sd", n.store)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.p = p
	n.mu.Unlock()
	return nil
}

// waitReady returns when a client connects and JetStream answers.
func (n *natsProc) waitReady() error {
	n.mu.Lock()
	p := n.p
	n.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("nats-server exited at start: %v\n%s", p.err, tail(n.logPath, 20))
		}
		nc, err := nats.Connect(n.URL, nats.Timeout(time.Second), nats.NoReconnect())
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nats-server at %s not ready in 30s: %v\n%s", n.URL, last, tail(n.logPath, 20))
}

// Kill sends SIGKILL to the nats-server.
func (n *natsProc) Kill() error {
	n.mu.Lock()
	p := n.p
	n.mu.Unlock()
	return p.kill()
}

// Restart starts the server again on the same port and store directory.
func (n *natsProc) Restart() error { return n.start() }

// connect opens a connection that reconnects forever.
func connect(url, name string) (*nats.Conn, error) {
	return nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 200*time.Millisecond),
		nats.ReconnectBufSize(32<<20),
		nats.Timeout(2*time.Second),
	)
}

// ---- the cluster: nats-server, MCP servers, workers ----

type clusterOptions struct {
	workers  int  // started at once
	httpDemo bool // run the demo MCP server over streamable HTTP
	natsSize int  // nats-servers: 0 or 1 for one, 3 for a JetStream cluster (replicas 3)
	// concurrency is each worker's worker.concurrency (0: workerConc).
	// Beyond 256 (beyondRunners) a call waits for its server on the
	// pool's goroutine, apart from the worker's runners.
	concurrency int
}

// beyondRunners is a worker.concurrency above the worker's 256 runners.
const beyondRunners = 300

type cluster struct {
	t        *testing.T
	conc     int // worker.concurrency
	dir      string
	bin      string      // the toolbus binary
	nats     *natsProc   // the first (or only) nats-server
	nodes    []*natsProc // every nats-server
	natsURL  string      // all of them, comma-separated
	nc       *nats.Conn  // the harness's own connection (admin reads)
	js       jetstream.JetStream
	yaml     string
	httpPort int
	httpLog  string // exec log of the HTTP demo server
	stdioLog string // exec log shared by every worker's stdio demo child

	mu      gosync.Mutex
	workers []*proc
	starts  []int // starts per worker index
	http    *proc
}

// newCluster starts nats-server, provisions JetStream with the fault tests'
// consumer, writes toolbus.yaml and starts the requested processes. All of
// it is killed in t.Cleanup; on failure the logs' tails are printed.
func newCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	dir := t.TempDir()
	nodes := startNATSCluster(t, dir, max(1, o.natsSize))
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.URL
	}
	c := &cluster{
		t:        t,
		conc:     cmp.Or(o.concurrency, workerConc),
		dir:      dir,
		nats:     nodes[0],
		nodes:    nodes,
		natsURL:  strings.Join(urls, ","),
		httpPort: testutil.FreePort(t),
		httpLog:  filepath.Join(dir, "exec-http.log"),
		stdioLog: filepath.Join(dir, "exec-stdio.log"),
		yaml:     filepath.Join(dir, "toolbus.yaml"),
	}
	c.bin = testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	nc, err := connect(c.natsURL, "faulttest-admin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, c.js, streams.Options{Replicas: len(nodes)}, streams.WorkerConsumer(0, ackWait, maxDeliver)); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := c.writeConfig(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopAll)
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
	})
	if o.httpDemo {
		c.StartHTTPDemo()
	}
	for i := 0; i < o.workers; i++ {
		c.StartWorker(i)
	}
	if o.workers > 0 {
		c.WaitWorkersReady(o.workers)
	}
	return c
}

// writeConfig writes toolbus.yaml (as JSON, which is YAML): the worker
// knobs and two servers, "demo" over stdio (a child of each worker) and
// "demo-http" over streamable HTTP.
func (c *cluster) writeConfig() error {
	cfg := map[string]any{
		"worker": map[string]any{
			"ack_wait":    ackWait.String(),
			"max_deliver": maxDeliver,
			"concurrency": c.conc,
		},
		"servers": map[string]any{
			"demo": map[string]any{
				"transport":        "stdio",
				"command":          c.bin,
				"args":             []string{"demo", "--transport", "stdio", "--faults", "--exec-log", c.stdioLog},
				"protocol_version": "2025-11-25",
			},
			"demo-http": map[string]any{
				"transport":        "http",
				"url":              fmt.Sprintf("http://127.0.0.1:%d/mcp", c.httpPort),
				"protocol_version": "2025-11-25",
			},
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(c.yaml, b, 0o644)
}

func (c *cluster) workerName(i int) string { return fmt.Sprintf("w%d", i+1) }

// StartWorker starts worker i (w<i+1>); its log goes to w<i+1>.log.
func (c *cluster) StartWorker(i int) {
	c.t.Helper()
	if err := c.startWorker(i); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) startWorker(i int) error {
	name := c.workerName(i)
	p, err := startProc(name, filepath.Join(c.dir, name+".log"), c.bin, "worker",
		"--config", c.yaml, "--nats-url", c.natsURL, "--name", name, "--log-level", "warn")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.workers) <= i {
		c.workers = append(c.workers, nil)
		c.starts = append(c.starts, 0)
	}
	c.workers[i] = p
	c.starts[i]++
	return nil
}

// supervise restarts any of workers 0..n-1 that exits, at most maxRestarts
// times in all, until the returned stop is called (also in t.Cleanup). It
// returns the times it saw a worker dead.
func (c *cluster) supervise(n, maxRestarts int) (stop func() []time.Time) {
	quit := make(chan struct{})
	var deaths []time.Time
	seen := map[*proc]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			for i := 0; i < n; i++ {
				p := c.worker(i)
				if p == nil || !p.exited() || seen[p] {
					continue
				}
				seen[p] = true
				deaths = append(deaths, time.Now())
				if len(deaths) > maxRestarts {
					continue
				}
				if err := c.startWorker(i); err != nil {
					c.t.Errorf("supervisor: restart %s: %v", c.workerName(i), err)
				}
			}
		}
	}()
	var once gosync.Once
	stop = func() []time.Time {
		once.Do(func() { close(quit); <-done })
		return deaths
	}
	c.t.Cleanup(func() { stop() })
	return stop
}

// callsLeft waits up to d for TOOL_CALLS to empty and returns what is left.
func (c *cluster) callsLeft(d time.Duration) uint64 {
	var left uint64
	waitFor(d, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := c.js.Stream(ctx, subjects.StreamCalls)
		if err != nil {
			left = ^uint64(0)
			return false
		}
		if left, err = streams.CallsStored(ctx, s); err != nil {
			left = ^uint64(0)
			return false
		}
		return left == 0
	})
	return left
}

// Kill9 sends SIGKILL to worker i and waits for it to exit.
func (c *cluster) Kill9(i int) {
	c.t.Helper()
	if err := c.worker(i).kill(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) worker(i int) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.workers[i]
}

// WaitWorkersReady waits until n pull requests wait on the workers
// consumer: each running worker keeps one open. Best effort: a worker that
// pulls differently only costs the wait.
func (c *cluster) WaitWorkersReady(n int) {
	c.t.Helper()
	ok := waitFor(30*time.Second, func() bool {
		c.mu.Lock()
		for i, p := range c.workers {
			if p != nil && p.exited() {
				c.mu.Unlock()
				c.t.Fatalf("worker %s exited at start: %v\n%s", c.workerName(i), p.err, tail(p.logPath, 30))
			}
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cons, err := c.js.Consumer(ctx, subjects.StreamCalls, subjects.ConsumerWorkers)
		if err != nil {
			return false
		}
		return cons.CachedInfo().NumWaiting >= n
	})
	if !ok {
		c.t.Logf("warning: fewer than %d pull requests waiting on %s after 30s; going on", n, subjects.ConsumerWorkers)
	}
}

// StartHTTPDemo starts the demo MCP server over streamable HTTP on the
// cluster's fixed port and waits until it accepts connections.
func (c *cluster) StartHTTPDemo() {
	c.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", c.httpPort)
	p, err := startProc("demo-http", filepath.Join(c.dir, "demo-http.log"), c.bin, "demo",
		"--transport", "http", "--addr", addr, "--faults", "--exec-log", c.httpLog)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.http = p
	c.mu.Unlock()
	ok := waitFor(15*time.Second, func() bool {
		if p.exited() {
			return false
		}
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	if !ok {
		c.t.Fatalf("demo HTTP server not listening on %s: %v\n%s", addr, p.err, tail(p.logPath, 20))
	}
}

// KillHTTPDemo sends SIGKILL to the HTTP demo server.
func (c *cluster) KillHTTPDemo() {
	c.t.Helper()
	c.mu.Lock()
	p := c.http
	c.mu.Unlock()
	if err := p.kill(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	ps := append([]*proc{c.http}, c.workers...)
	c.mu.Unlock()
	for _, p := range ps {
		if err := p.kill(); err != nil {
			c.t.Error(err)
		}
	}
}

// countLogLines counts the lines holding s in every worker's log.
func (c *cluster) countLogLines(s string) int {
	paths, _ := filepath.Glob(filepath.Join(c.dir, "w*.log"))
	n := 0
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		n += bytes.Count(b, []byte(s))
	}
	return n
}

func (c *cluster) dumpLogs() {
	c.mu.Lock()
	ps := append([]*proc{c.http}, c.workers...)
	c.mu.Unlock()
	for _, p := range ps {
		if p != nil {
			c.t.Logf("---- tail of %s ----\n%s", p.logPath, tail(p.logPath, 40))
		}
	}
	for _, n := range c.nodes {
		c.t.Logf("---- tail of %s ----\n%s", n.logPath, tail(n.logPath, 20))
	}
}

// execCounts reads both exec logs: executions per key (the call id).
func (c *cluster) execCounts() map[string]int {
	c.t.Helper()
	out := map[string]int{}
	for _, path := range []string{c.httpLog, c.stdioLog} {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			c.t.Fatal(err)
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			if _, key, ok := strings.Cut(s.Text(), " "); ok {
				out[key]++
			}
		}
		f.Close()
		if err := s.Err(); err != nil {
			c.t.Fatal(err)
		}
	}
	return out
}

// execCount is the executions of one key so far.
func (c *cluster) execCount(key string) int { return c.execCounts()[key] }

// deadLetters counts the messages in TOOL_DEAD.
func (c *cluster) deadLetters() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, subjects.StreamDead)
	if err != nil {
		return 0, err
	}
	return int(s.CachedInfo().State.Msgs), nil
}

// ---- load generator ----

// callSpec is one call to send. For count and destroy, args carry
// key = id, so the exec log tells the executions of each call.
type callSpec struct {
	id     string
	server string
	tool   string
	args   []byte
}

// countCalls returns n calls of count on server, each with its own key.
func countCalls(prefix string, n int, server string, ms int) []callSpec {
	out := make([]callSpec, n)
	for i := range out {
		id := fmt.Sprintf("%s-%06d-%s", prefix, i, nats.NewInbox()[len(nats.InboxPrefix):])
		out[i] = callSpec{id: id, server: server, tool: "count", args: fmt.Appendf(nil, `{"key":%q,"ms":%d}`, id, ms)}
	}
	return out
}

// callState is what the load generator knows of one call.
type callState struct {
	spec       callSpec
	accepted   bool // JetStream acknowledged the publish
	pubRetries int
	replies    int              // different results delivered on tool.result.<agent>.<id>
	copies     int              // deliveries of the same result again (a re-announced answer)
	first      *subjects.Result // the first delivered result
	firstData  []byte
	from       []string         // "worker#attempt outcome" of each delivered result
	stored     *subjects.Result // read from TOOL_RESULTS when no reply came
	got        chan struct{}    // closed on the first reply
}

// arrival is one delivered result, for recovery times.
type arrival struct {
	at      time.Time
	outcome string
	attempt int // the JetStream delivery that produced it
}

// loadGen publishes calls as any NATS client would, with its own
// connection, as agent loadAgent, and counts every result per call id on one
// subscription to tool.reply.<agent>.*.
type loadGen struct {
	t       *testing.T
	nc      *nats.Conn
	js      jetstream.JetStream
	results jetstream.Stream

	mu       gosync.Mutex
	calls    map[string]*callState
	arrivals []arrival
	strays   int // replies for ids never sent
	bad      int // replies that do not decode
}

func newLoadGen(t *testing.T, url string) *loadGen {
	t.Helper()
	nc, err := connect(url, "faulttest-load")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	lg := &loadGen{t: t, nc: nc, js: js, calls: map[string]*callState{}}
	sub, err := nc.Subscribe(subjects.ToolReplies(loadAgent), lg.onReply)
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return lg
}

// loadAgent is the agent the load generator calls as.
const loadAgent = "load"

func (lg *loadGen) onReply(m *nats.Msg) {
	_, id, _ := subjects.ParseCallRef(m.Subject, subjects.ToolReplyPrefix)
	now := time.Now()
	var res subjects.Result
	decErr := json.Unmarshal(m.Data, &res)
	lg.mu.Lock()
	defer lg.mu.Unlock()
	st := lg.calls[id]
	if st == nil {
		lg.strays++
		return
	}
	if decErr != nil {
		lg.bad++
	}
	if st.replies > 0 && bytes.Equal(m.Data, st.firstData) {
		st.copies++
		return
	}
	st.replies++
	st.from = append(st.from, fmt.Sprintf("%s#%d %s", res.Worker, res.Attempt, outcome(&res)))
	if st.replies == 1 {
		st.first, st.firstData = &res, m.Data
		close(st.got)
	}
	lg.arrivals = append(lg.arrivals, arrival{at: now, outcome: outcome(&res), attempt: res.Attempt})
}

// outcome names a result: ok, tool_error, or its error code.
func outcome(r *subjects.Result) string {
	if r == nil {
		return "none"
	}
	if r.Status == subjects.StatusError {
		if r.Error == nil {
			return "error"
		}
		return string(r.Error.Code)
	}
	return string(r.Status)
}

// describe renders a result for a failure message.
func describe(r *subjects.Result) string {
	if r == nil {
		return "no result"
	}
	s := fmt.Sprintf("%s from %s (attempt %d, %.0fms)", outcome(r), r.Worker, r.Attempt, r.DurationMS)
	if r.Error != nil {
		s += ": " + r.Error.Message
	}
	if len(r.Result) > 0 {
		s += ": " + string(r.Result)
	}
	return s
}

// delivered is the number of calls with at least one delivered result.
func (lg *loadGen) delivered() int {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	n := 0
	for _, st := range lg.calls {
		if st.replies > 0 {
			n++
		}
	}
	return n
}

func (lg *loadGen) ptr(id string) *callState {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return lg.calls[id]
}

// state returns a snapshot of one call's state.
func (lg *loadGen) state(id string) callState {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return *lg.calls[id]
}

// start sends calls with at most conc in flight and returns a channel
// closed when every call has a result or has given up (its deadline plus a
// few seconds, or ctx).
func (lg *loadGen) start(ctx context.Context, calls []callSpec, conc int) <-chan struct{} {
	lg.mu.Lock()
	for _, c := range calls {
		lg.calls[c.id] = &callState{spec: c, got: make(chan struct{})}
	}
	lg.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sem := make(chan struct{}, conc)
		var wg gosync.WaitGroup
		for _, c := range calls {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				lg.one(ctx, c)
			}()
		}
		wg.Wait()
	}()
	return done
}

// run sends calls and waits for them all.
func (lg *loadGen) run(ctx context.Context, calls []callSpec, conc int) {
	<-lg.start(ctx, calls, conc)
}

func (lg *loadGen) one(ctx context.Context, c callSpec) {
	st := lg.ptr(c.id)
	subject, err := subjects.ToolCall(loadAgent, c.server, c.tool)
	if err != nil {
		lg.t.Errorf("call %s: %v", c.id, err)
		return
	}
	deadline := time.Now().Add(callTimeout)
	// Publish until JetStream acknowledges it, with the same call id every
	// time: the duplicate window stores it once.
	retries := 0
	for {
		msg := nats.NewMsg(subject)
		msg.Data = c.args
		msg.Header.Set(subjects.HeaderCallID, c.id)
		msg.Header.Set(subjects.HeaderDeadline, subjects.FormatDeadline(deadline))
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := lg.js.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			break
		}
		retries++
		if ctx.Err() != nil || time.Now().After(deadline) {
			lg.mu.Lock()
			st.pubRetries = retries
			lg.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(retries)*100*time.Millisecond, time.Second)):
		}
	}
	lg.mu.Lock()
	st.accepted, st.pubRetries = true, retries
	lg.mu.Unlock()

	// Wait for the reply. Like the Go client, look for the stored result
	// when the reply is late (it may have been sent while this connection
	// was reconnecting), so the slot is not held for the whole deadline.
	giveUp := time.NewTimer(time.Until(deadline) + 5*time.Second)
	defer giveUp.Stop()
	firstPoll := time.NewTimer(storePollAfter)
	defer firstPoll.Stop()
	var poll <-chan time.Time
	for {
		select {
		case <-st.got:
			return
		case <-ctx.Done():
			return
		case <-giveUp.C:
			return
		case <-firstPoll.C:
			tk := time.NewTicker(storePollEvery)
			defer tk.Stop()
			poll = tk.C
			if lg.fetchStored(ctx, st) {
				return
			}
		case <-poll:
			if lg.fetchStored(ctx, st) {
				return
			}
		}
	}
}

// fetchStored reads the call's result from TOOL_RESULTS by exact subject.
func (lg *loadGen) fetchStored(ctx context.Context, st *callState) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	lg.mu.Lock()
	rs := lg.results
	lg.mu.Unlock()
	if rs == nil {
		s, err := lg.js.Stream(ctx, subjects.StreamResults)
		if err != nil {
			return false
		}
		lg.mu.Lock()
		lg.results, rs = s, s
		lg.mu.Unlock()
	}
	m, err := rs.GetLastMsgForSubject(ctx, subjects.ToolResult(loadAgent, st.spec.id))
	if err != nil {
		return false
	}
	var res subjects.Result
	if err := json.Unmarshal(m.Data, &res); err != nil {
		return false
	}
	lg.mu.Lock()
	st.stored = &res
	lg.mu.Unlock()
	return true
}

// ---- the report ----

// row is one scenario's line in the table.
type row struct {
	Scenario   string
	Sent       int // calls JetStream accepted
	Unsent     int // calls never accepted (publish gave up)
	PubRetries int // publishes retried with the same id
	Results    int // calls with at least one delivered result
	Dup        int // calls with more than one delivered result
	NoReply    int // accepted calls with no delivered result
	NoResult   int // ... and no stored result in TOOL_RESULTS either
	Dead       int // messages in TOOL_DEAD
	Exec0      int // executing calls (count, destroy) that never ran
	Exec1      int // ... ran once
	ExecGT1    int // ... ran more than once
	Outcomes   map[string]int
	Discarded  int           // finished results a worker could not store (logged "could not store the result")
	Recovery   time.Duration // fault to the next matching result; -1: none
	Settled    time.Duration // fault to the last result of a call delivered more than once; -1: none
	Wall       time.Duration
}

// executes reports whether a tool writes the exec log.
func executes(tool string) bool { return tool == "count" || tool == "destroy" }

// report builds the row for calls. It first waits lateReplyWindow, so a
// duplicate result delivered late is still counted, then looks for every
// missing result in TOOL_RESULTS.
func (lg *loadGen) report(c *cluster, scenario string, calls []callSpec, wall time.Duration) *row {
	lg.t.Helper()
	time.Sleep(lateReplyWindow)
	r := &row{Scenario: scenario, Outcomes: map[string]int{}, Wall: wall, Recovery: -1, Settled: -1}
	exec := c.execCounts()
	var dupIDs, missingIDs []string
	for _, cs := range calls {
		st := lg.state(cs.id)
		r.PubRetries += st.pubRetries
		if !st.accepted {
			r.Unsent++
			continue
		}
		r.Sent++
		res := st.first
		switch {
		case st.replies > 0:
			r.Results++
			if st.replies > 1 {
				r.Dup++
				dupIDs = append(dupIDs, fmt.Sprintf("%s%v", cs.id, st.from))
			}
		default:
			r.NoReply++
			// One last look, after the run: the stored copy is what a
			// late reader gets.
			for i := 0; i < 3 && st.stored == nil; i++ {
				if lg.fetchStored(context.Background(), lg.ptr(cs.id)) {
					st = lg.state(cs.id)
				}
			}
			res = st.stored
			if res == nil {
				r.NoResult++
				missingIDs = append(missingIDs, cs.id)
			}
		}
		r.Outcomes[outcome(res)]++
		if executes(cs.tool) {
			switch n := exec[cs.id]; {
			case n == 0:
				r.Exec0++
			case n == 1:
				r.Exec1++
			default:
				r.ExecGT1++
			}
		}
	}
	r.Discarded = c.countLogLines("could not store the result")
	if d, err := c.deadLetters(); err == nil {
		r.Dead = d
	} else {
		r.Dead = -1
		lg.t.Logf("TOOL_DEAD: %v", err)
	}
	lg.mu.Lock()
	if lg.strays > 0 || lg.bad > 0 {
		lg.t.Logf("%d replies for unknown call ids, %d undecodable replies", lg.strays, lg.bad)
	}
	lg.mu.Unlock()
	if len(dupIDs) > 0 {
		lg.t.Logf("calls with more than one result (first 10): %v", first(dupIDs, 10))
	}
	if len(missingIDs) > 0 {
		lg.t.Logf("calls with no result (first 10): %v", first(missingIDs, 10))
	}
	return r
}

// recovery sets r.Recovery: from fault to the first result that arrived
// after from (fault, or when the broken part was back) and satisfies match.
func (lg *loadGen) recovery(r *row, fault, from time.Time, match func(arrival) bool) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	r.Settled = -1
	for _, a := range lg.arrivals {
		if a.at.After(fault) && a.attempt > 1 {
			r.Settled = max(r.Settled, a.at.Sub(fault)) // the calls the fault sent back, answered
		}
	}
	for _, a := range lg.arrivals {
		if a.at.After(fault) && a.at.After(from) && match(a) {
			r.Recovery = a.at.Sub(fault)
			return
		}
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// check asserts the promise every scenario shares: every accepted call has
// a result, and no call id got two.
func (r *row) check(t *testing.T) {
	t.Helper()
	if r.Unsent > 0 {
		t.Errorf("%d calls were never accepted by JetStream (publish retried until the deadline)", r.Unsent)
	}
	if r.NoResult > 0 {
		t.Errorf("%d of %d calls got no result (no reply, nothing in %s); %d had no reply", r.NoResult, r.Sent, subjects.StreamResults, r.NoReply)
	}
	if r.Dup > 0 {
		t.Errorf("%d calls got more than one result delivered", r.Dup)
	}
}

var (
	tableMu gosync.Mutex
	table   []*row
)

// record logs r as a table and keeps it for the summary TestMain prints.
func (r *row) record(t *testing.T) {
	t.Helper()
	t.Logf("\n%s", formatTable([]*row{r}))
	tableMu.Lock()
	table = append(table, r)
	tableMu.Unlock()
}

func formatOutcomes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func formatDur(d time.Duration) string {
	switch {
	case d < 0:
		return "none"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// formatTable renders rows as a Markdown table; every line starts with '|'
// so `make test` can grep it out of `go test -v`.
func formatTable(rows []*row) string {
	head := []string{"scenario", "sent", "results", "dup_results", "no_reply", "missing", "dead", "exec_0", "exec_1", "exec_gt1", "discarded", "outcomes", "pub_retries", "recovery", "settled", "wall"}
	cells := [][]string{head}
	for _, r := range rows {
		cells = append(cells, []string{
			r.Scenario, strconv.Itoa(r.Sent), strconv.Itoa(r.Results), strconv.Itoa(r.Dup),
			strconv.Itoa(r.NoReply), strconv.Itoa(r.NoResult), strconv.Itoa(r.Dead),
			strconv.Itoa(r.Exec0), strconv.Itoa(r.Exec1), strconv.Itoa(r.ExecGT1), strconv.Itoa(r.Discarded),
			formatOutcomes(r.Outcomes), strconv.Itoa(r.PubRetries), formatDur(r.Recovery), formatDur(r.Settled), formatDur(r.Wall),
		})
	}
	width := make([]int, len(head))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	var b bytes.Buffer
	line := func(row []string) {
		for i, c := range row {
			fmt.Fprintf(&b, "| %-*s ", width[i], c)
		}
		b.WriteString("|\n")
	}
	line(cells[0])
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, row := range cells[1:] {
		line(row)
	}
	return b.String()
}

const legend = `no_reply: no result delivered on tool.reply.<agent>.<id>; missing: no reply and nothing in TOOL_RESULTS either.
recovery: from the fault to the first result showing recovery. kill worker: the next ok (the
killed worker's calls come back after ack_wait, 2s here; those it had stored are answered
through TOOL_RESULTS); NATS and MCP: the next ok after the restart; poison: the next
redelivered result after the first worker death; destructive: the interrupted call's result.
settled: from the fault to the last result of a call delivered more than once (the calls the
fault sent back, answered). discarded: finished results a worker could not store (it logs
"could not store the result"; the call then runs again). exec_gt1 of count (idempotent) is
allowed; of destroy (destructive, not idempotent), never.
`

func TestMain(m *testing.M) {
	code := m.Run()
	tableMu.Lock()
	if len(table) > 0 {
		size := os.Getenv("SOAK_CALLS")
		if size == "" {
			size = strconv.Itoa(defaultCalls) + " (default)"
		}
		fmt.Printf("\nfault-injection table, SOAK_CALLS=%s\n%s%s", size, legend, formatTable(table))
	}
	tableMu.Unlock()
	os.Exit(code)
}

// WaitCatalog waits until the catalog has server/tool, so the workers know
// its annotations (a destructive tool is treated as such only once synced).
func (c *cluster) WaitCatalog(server, tool string) {
	c.t.Helper()
	kv, err := c.js.KeyValue(context.Background(), subjects.BucketCatalog)
	if err != nil {
		c.t.Fatalf("catalog bucket: %v", err)
	}
	key, _ := subjects.CatalogKey(server, tool)
	if !waitFor(30*time.Second, func() bool {
		_, err := kv.Get(context.Background(), key)
		return err == nil
	}) {
		c.dumpLogs()
		c.t.Fatalf("%s/%s never reached the catalog", server, tool)
	}
}

// streamLeader returns the nats-server leading stream's raft group.
func (c *cluster) streamLeader(stream string) *natsProc {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		c.t.Fatalf("stream %s: %v", stream, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		c.t.Fatalf("stream %s has no cluster info", stream)
	}
	for _, n := range c.nodes {
		if n.name == info.Cluster.Leader {
			return n
		}
	}
	c.t.Fatalf("leader %q of %s is none of the nodes", info.Cluster.Leader, stream)
	return nil
}

// killRestart kills -9 a nats-server, leaves it down a second and starts it
// again on the same port and store; it returns when it was killed and when
// it was back.
func (c *cluster) killRestart(n *natsProc, lg *loadGen) (fault, back time.Time) {
	c.t.Helper()
	if err := n.Kill(); err != nil {
		c.t.Fatal(err)
	}
	fault = time.Now()
	c.t.Logf("killed nats-server %s (kill -9) after %d results", n.name, lg.delivered())
	time.Sleep(time.Second) // the outage
	if err := n.Restart(); err != nil {
		c.t.Fatal(err)
	}
	back = time.Now()
	c.t.Logf("nats-server %s back after %v", n.name, back.Sub(fault).Round(time.Millisecond))
	return fault, back
}
