package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// freePort returns a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proc is a process the bench started (mcp-proxy, a toolbus serve).
type proc struct {
	cmd     *exec.Cmd
	pid     int
	dir     string
	natsURL string // a serve's embedded NATS
	exited  chan struct{}
}

func startProc(ctx context.Context, dir string, stderr io.Writer, exe string, args ...string) (*proc, error) {
	// It runs in dir: a relative path names a file from here.
	exe, err := filepath.Abs(exe)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, dir: dir, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitListening waits until addr accepts TCP connections, or the process
// exits, or 30s pass.
func (p *proc) waitListening(addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before listening on %s: %v", p.cmd.Path, addr, p.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after 30s", p.cmd.Path, addr)
		}
	}
}

// close ends the process with SIGTERM (SIGKILL after 10s) and removes its
// directory.
func (p *proc) close() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

// startProxy runs mcp-proxy (TBXark/mcp-proxy) in front of the demo server
// over streamable HTTP and returns the demo server's URL through it.
func startProxy(ctx context.Context, exe, demoURL string) (url string, pid int, stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return "", 0, nil, err
	}
	dir, err := os.MkdirTemp("", "toolbus-bench-proxy-")
	if err != nil {
		return "", 0, nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := map[string]any{
		"mcpProxy": map[string]any{"baseURL": "http://" + addr, "addr": addr, "name": "p", "version": "1",
			"type": "streamable-http", "options": map[string]any{"logEnabled": false}},
		"mcpServers": map[string]any{"demo": map[string]any{"transportType": "streamable-http", "url": demoURL}},
	}
	data, _ := json.Marshal(cfg)
	conf := filepath.Join(dir, "config.json")
	if err := os.WriteFile(conf, data, 0o600); err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, err
	}
	// Its log (a line per server connecting) is of no use here.
	p, err := startProc(ctx, dir, io.Discard, exe, "--config", conf)
	if err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, fmt.Errorf("mcp-proxy: %w", err)
	}
	if err := p.waitListening(addr); err != nil {
		p.close()
		return "", 0, nil, fmt.Errorf("mcp-proxy: %w", err)
	}
	// It serves each server at <baseURL>/<name>/mcp once connected to it
	// (404 before: the probe retries).
	return "http://" + addr + "/demo/mcp", p.pid, p.close, nil
}

// startServeBin runs `exe serve` with an embedded NATS on a free port, the
// bridge off and the demo server in its config, and waits for its NATS.
func startServeBin(ctx context.Context, o Options, exe, demoURL string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "toolbus-bench-serve-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "toolbus.yaml")
	yaml := fmt.Sprintf("servers:\n  demo:\n    transport: http\n    url: %q\n    protocol_version: %q\n", demoURL, o.ProtocolVersion)
	if o.ServerConcurrency > 0 {
		yaml += fmt.Sprintf("    max_concurrency: %d\n", o.ServerConcurrency)
	}
	if o.Worker.Concurrency > 0 || o.Worker.MaxAckPending > 0 {
		yaml += "worker:\n"
		if o.Worker.Concurrency > 0 {
			yaml += fmt.Sprintf("  concurrency: %d\n", o.Worker.Concurrency)
		}
		if o.Worker.MaxAckPending > 0 {
			yaml += fmt.Sprintf("  max_ack_pending: %d\n", o.Worker.MaxAckPending)
		}
	}
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"serve", "--config", conf, "--data", filepath.Join(dir, "data"),
		"--port", strconv.Itoa(port), "--bridge", "off", "--log-level", "warn"}
	if o.MemoryLimit != "" {
		args = append(args, "--memory-limit", o.MemoryLimit)
	}
	p, err := startProc(ctx, dir, os.Stderr, exe, args...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := p.waitListening(addr); err != nil {
		p.close()
		return nil, err
	}
	p.natsURL = "nats://" + addr
	return p, nil
}

// startServeAgent runs bin as `serve` (startServeBin) and an agent process
// of its own speaking the wire protocol to it, as agent.
func startServeAgent(ctx context.Context, o Options, bin, demoURL, agent string) (*proc, *child, error) {
	sp, err := startServeBin(ctx, o, bin, demoURL)
	if err != nil {
		return nil, nil, err
	}
	lg, err := startLoadgen(ctx, o, sp.natsURL, demoURL, "--agent", agent)
	if err != nil {
		sp.close()
		return nil, nil, err
	}
	return sp, lg, nil
}

// serveLabel names the i-th --serve-bin by its file name, with its position
// when two share one.
func serveLabel(bins []string, i int) string {
	name := filepath.Base(bins[i])
	for k, b := range bins {
		if k != i && filepath.Base(b) == name {
			return name + "#" + strconv.Itoa(i+1)
		}
	}
	return name
}
