package mcppool

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/registry"
)

// Defaults for the zero values of registry.Server's knobs.
const (
	DefaultConnectTimeout = 15 * time.Second
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultMaxConcurrency = 64
	DefaultCallTimeout    = 60 * time.Second
)

// DefaultFirstConnectTimeout replaces DefaultConnectTimeout for the first
// connect of a stdio server started by a package runner (see
// ConnectTimeout): npx, uvx and the like may download the package first.
const DefaultFirstConnectTimeout = 2 * time.Minute

// clientName is the clientInfo name sent in the handshake.
const clientName = "toolbus"

// DialOptions are the collaborators of Dial. The zero value works.
type DialOptions struct {
	// Log receives the stdio child's stderr lines (info, key "server") and
	// connection events. Zero value: a disabled logger.
	Log zerolog.Logger
	// HTTPClient is used for sse and http servers. nil: a new one sized for
	// concurrent calls (NewHTTPClient). Share one per server.
	HTTPClient *http.Client
	// HeaderFunc returns extra HTTP headers for each request (sse/http).
	HeaderFunc func(context.Context) map[string]string
	// OnNotification receives every notification the server sends.
	OnNotification func(mcp.JSONRPCNotification)
	// DiscoverTimeout bounds the server/discover probe when the protocol is
	// negotiated. 0: mcp-go's default (5s).
	DiscoverTimeout time.Duration
	// Listen opens streamable HTTP's standing GET stream, on which servers
	// before 2026-07-28 send notifications outside a request (e.g.
	// tools/list_changed). It keeps the session on the initialize handshake.
	Listen bool
	// Redial says the server was connected before by this caller, so a
	// package runner has its package by now: the first-connect allowance
	// of ConnectTimeout does not apply. The zero value counts as a first
	// connect.
	Redial bool
}

// packageRunners are the commands that may fetch the server's package or
// image before running it: a first connect through them gets
// DefaultFirstConnectTimeout.
var packageRunners = []string{"npx", "uvx", "bunx", "pipx", "docker"}

// ConnectTimeout is how long connecting to srv (start plus handshake) may
// take: srv.ConnectTimeout when set; else, for the first connect (first) of
// a stdio server whose command is a package runner (npx, uvx, bunx, pipx,
// docker — by base name, also as npx.cmd and the like), which may download
// the package or image first, DefaultFirstConnectTimeout; else
// DefaultConnectTimeout. It is the one place that decides.
func ConnectTimeout(srv registry.Server, first bool) time.Duration {
	if d := srv.ConnectTimeout.D(); d > 0 {
		return d
	}
	if first && srv.Transport == registry.TransportStdio && packageRunner(srv.Command) {
		return DefaultFirstConnectTimeout
	}
	return DefaultConnectTimeout
}

// packageRunner reports whether command names one of packageRunners.
func packageRunner(command string) bool {
	base := strings.ToLower(filepath.Base(strings.ReplaceAll(command, "\\", "/")))
	for _, ext := range []string{".exe", ".cmd", ".bat", ".ps1"} {
		base = strings.TrimSuffix(base, ext)
	}
	return slices.Contains(packageRunners, base)
}

// Each connection to an MCP server holds a write and a read buffer for its
// whole life, and a call in flight holds a connection (HTTP/1.1): 4 KB each
// by default, 8 KB of the serve side's memory per call in flight. Requests
// and responses larger than a buffer are copied past it (bufio reads and
// writes them directly), and a call's request is a few hundred bytes of
// headers and its arguments, so smaller buffers cost no extra system call
// for the common call.
const (
	httpWriteBuffer = 1 << 10
	httpReadBuffer  = 1 << 10
	httpIdleTimeout = 90 * time.Second
)

// NewHTTPClient returns an http.Client for MCP servers that keeps up to
// maxConnsPerHost idle connections per host (default 256). Go's default keeps
// 2, which opens a new connection for nearly every concurrent call. There is
// no overall timeout: calls are bounded by their context, and SSE streams
// live as long as the session.
func NewHTTPClient(maxConnsPerHost int) *http.Client {
	if maxConnsPerHost <= 0 {
		maxConnsPerHost = 256
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = maxConnsPerHost
	if t.MaxIdleConns < maxConnsPerHost*4 {
		t.MaxIdleConns = maxConnsPerHost * 4
	}
	t.IdleConnTimeout = httpIdleTimeout
	t.WriteBufferSize, t.ReadBufferSize = httpWriteBuffer, httpReadBuffer
	return &http.Client{Transport: wholeBodies{newH1(t, maxConnsPerHost, httpIdleTimeout)}}
}

// Dial builds the transport for srv, starts it and completes the MCP
// handshake: the one pinned by srv.ProtocolVersion, or, when it is empty,
// the server/discover probe (2026-07-28) falling back to initialize.
//
// stdio runs srv.Command with srv.Args in srv.Dir, with the InheritedEnv
// variables of our environment plus srv.Env and nothing else of ours; the
// child's stderr lines go to o.Log at info. sse and http (streamable) send
// srv.Headers and srv.AuthToken on every request: as "Authorization: Bearer
// <token>" when srv.AuthHeader is "" or "Authorization", else as the raw
// value under srv.AuthHeader.
//
// Connecting is bounded by ConnectTimeout (srv.ConnectTimeout; by default
// 15s, or 2m for the first connect of an npx, uvx, bunx, pipx or docker
// server) and ctx; ctx does not bound the session's life. Errors are a
// *TransportError (could not start or reach the server), a *ProtocolError
// (it refused the handshake), or ctx's error, wrapped. The caller owns the
// client and must Close it.
func Dial(ctx context.Context, srv registry.Server, o DialOptions) (*client.Client, error) {
	c, err := dial(ctx, srv, o, false)
	if err != nil {
		return nil, err
	}
	return c.client, nil
}

// conn is a dialled session with what the pool needs beyond the client.
type conn struct {
	client *client.Client
	tr     transport.Interface // the wrapped transport, for the raw call path
	server string
	target string // URL or command, for messages
	hooks  *hooks
	child  *child // stdio only
	// modernMeta holds the _meta members of every request on 2026-07-28
	// (SEP-2575), without braces; nil on earlier versions.
	modernMeta []byte

	lost     chan struct{} // closed when the transport reports the connection gone
	lostOnce sync.Once
	lostErr  error // set before lost is closed

	closeOnce sync.Once
	closeErr  error
}

func (c *conn) markLost(err error) {
	c.lostOnce.Do(func() {
		c.lostErr = err
		close(c.lost)
	})
}

// close closes the transport once (stdio: close stdin, wait, SIGTERM, kill).
func (c *conn) close() error {
	c.closeOnce.Do(func() { c.closeErr = c.client.Close() })
	return c.closeErr
}

// exitError closes a stdio session whose child died and says how it ended,
// with its last stderr lines. For other transports it returns cause.
func (c *conn) exitError(cause error) error {
	if c.child == nil {
		return cause
	}
	_ = c.close()
	// The child is gone, so stderr reaches EOF at once unless a grandchild
	// still holds it; don't wait for that long.
	select {
	case <-c.child.stderrDone:
	case <-time.After(time.Second):
	}
	how := "exited"
	if st := c.child.state(); st != nil {
		how = st.String()
	}
	msg := fmt.Sprintf("process %q exited (%s)", c.child.command, how)
	if tail := c.child.lastStderr(); tail != "" {
		msg += "; last stderr: " + tail
	}
	return explain(errors.Join(errProcessExited, cause), "%s", msg)
}

func dial(ctx context.Context, srv registry.Server, o DialOptions, rpcErrors bool) (*conn, error) {
	timeout := ConnectTimeout(srv, !o.Redial)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	c := &conn{server: srv.Name, lost: make(chan struct{})}
	c.hooks = newHooks(rpcErrors, o.Log)
	var tr transport.Interface
	var err error
	switch srv.Transport {
	case registry.TransportStdio:
		c.target = srv.Command
		tr, err = c.newStdio(srv, o)
	case registry.TransportHTTP, registry.TransportSSE:
		c.target = registry.RedactURL(srv.URL) // it goes into error messages
		tr, err = c.newHTTP(srv, o, timeout)
	default:
		err = fmt.Errorf("transport %q is not one of stdio, sse, http", srv.Transport)
	}
	if err != nil {
		return nil, &TransportError{Server: srv.Name, Class: ClassTransport, Err: err}
	}

	var copts []client.ClientOption
	if srv.ProtocolVersion != "" {
		copts = append(copts, client.WithProtocolVersion(srv.ProtocolVersion))
	}
	if o.DiscoverTimeout != 0 {
		copts = append(copts, client.WithDiscoverTimeout(o.DiscoverTimeout))
	}
	c.tr = tr
	c.client = client.NewClient(tr, copts...)
	c.client.OnConnectionLost(func(err error) {
		if err == nil {
			err = io.EOF
		}
		c.markLost(err)
	})
	if o.OnNotification != nil {
		c.client.OnNotification(o.OnNotification)
	}

	start := time.Now()
	if err := c.start(cctx); err != nil {
		return nil, c.dialFailed(ctx, cctx, timeout, "start", err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = srv.ProtocolVersion
	req.Params.ClientInfo = mcp.Implementation{Name: clientName, Version: "1"}
	res, err := c.client.Initialize(cctx, req)
	if err != nil {
		return nil, c.dialFailed(ctx, cctx, timeout, "handshake", err)
	}
	c.hooks.setVersion(c.client.ProtocolVersion())
	c.setModernMeta(c.client.ProtocolVersion())
	o.Log.Debug().Str("server", srv.Name).Str("protocol", c.client.ProtocolVersion()).
		Str("peer", res.ServerInfo.Name).Float64("duration_ms", ms(time.Since(start))).Msg("mcp session open")
	return c, nil
}

// start runs the transport's Start, bounded by cctx. Start gets a context
// that outlives the dial: SSE ties its event stream to it and stdio its
// server-request handling; Close ends both.
func (c *conn) start(cctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- c.client.Start(context.WithoutCancel(cctx)) }()
	select {
	case err := <-done:
		if c.child != nil {
			c.child.started()
		}
		return err
	case <-cctx.Done():
		_ = c.close()
		err := <-done
		if c.child != nil {
			c.child.started()
		}
		if err == nil {
			err = cctx.Err()
		}
		return err
	}
}

// dialFailed closes what was opened and turns err into the package's kinds.
// stage is "start" (spawning / connecting) or "handshake".
func (c *conn) dialFailed(ctx, cctx context.Context, timeout time.Duration, stage string, err error) error {
	exited := false
	// A child that never started did not exit: its stderr pipe closing
	// (which also marks the conn lost) must not hide why it did not start.
	if c.child != nil && c.child.spawned() {
		select {
		case <-c.lost:
			exited = true
		default:
		}
		exited = exited || errors.Is(err, transport.ErrTransportClosed) || errors.Is(err, syscall.EPIPE)
	}
	if exited {
		return &TransportError{Server: c.server, Class: ClassProcessExited, Err: c.exitError(err)}
	}
	_ = c.close()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("server %q: connect: %w", c.server, context.Cause(ctx))
	case c.child != nil && stage == "start":
		cause := err
		var ee *exec.Error
		var pe *fs.PathError
		if errors.As(err, &ee) {
			cause = ee
		} else if errors.As(err, &pe) {
			cause = pe
		}
		return &TransportError{Server: c.server, Class: startClass(err), Err: explain(err, "cannot start %q: %v", c.child.command, cause)}
	case cctx.Err() != nil:
		msg := fmt.Sprintf("no MCP handshake from %s within connect_timeout %s", c.target, timeout)
		if c.child != nil {
			if tail := c.child.lastStderr(); tail != "" {
				msg += "; last stderr: " + tail
			}
		}
		return &TransportError{Server: c.server, Class: ClassTimeout, Err: explain(err, "%s", msg)}
	}
	return classify(ctx, c.server, c.target, err)
}

// ---- stdio ----

// child is the stdio server process: its stderr, read by us so each line can
// be logged and the last ones quoted when it dies, and EOF on stderr tells
// promptly that it exited.
type child struct {
	command    string
	log        zerolog.Logger
	server     string
	cmd        *exec.Cmd
	pw         *os.File // our copy of the stderr write end, closed after Start
	stderrDone chan struct{}
	onExit     func()

	mu   sync.Mutex
	tail []string
}

const tailLines = 8

// started closes our copy of the pipe's write end once the child has it, so
// the reader sees EOF when the child exits.
func (ch *child) started() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.pw != nil {
		_ = ch.pw.Close()
		ch.pw = nil
	}
}

// spawned reports whether the process was started (read after Start).
func (ch *child) spawned() bool { return ch.cmd != nil && ch.cmd.Process != nil }

func (ch *child) state() *os.ProcessState {
	if ch.cmd == nil {
		return nil
	}
	return ch.cmd.ProcessState
}

func (ch *child) readStderr(r *os.File) {
	defer close(ch.stderrDone)
	defer r.Close()
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, err := br.ReadString('\n')
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			if len(line) > 2000 {
				line = line[:2000] + "…"
			}
			ch.log.Info().Str("server", ch.server).Str("stream", "stderr").Msg(line)
			ch.mu.Lock()
			ch.tail = append(ch.tail, line)
			if len(ch.tail) > tailLines {
				ch.tail = ch.tail[len(ch.tail)-tailLines:]
			}
			ch.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	if ch.onExit != nil {
		ch.onExit()
	}
}

func (ch *child) lastStderr() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	s := strings.Join(ch.tail, " | ")
	if len(s) > 1000 {
		s = "…" + s[len(s)-1000:]
	}
	return s
}

func (c *conn) newStdio(srv registry.Server, o DialOptions) (transport.Interface, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	ch := &child{
		command: srv.Command, log: o.Log, server: srv.Name, pw: pw,
		stderrDone: make(chan struct{}),
		onExit:     func() { c.markLost(errProcessExited) },
	}
	c.child = ch
	go ch.readStderr(pr)

	env := stdioEnv(os.Environ(), srv.Env)
	// Our own command: not bound to the dial's context (mcp-go's default
	// exec.CommandContext would kill the child when connecting ends), in
	// srv.Dir, stderr to our pipe, and only env (mcp-go's default adds all
	// of os.Environ()).
	cmdFunc := func(_ context.Context, command string, env []string, args []string) (*exec.Cmd, error) {
		cmd := exec.Command(command, args...)
		cmd.Env = env
		cmd.Dir = srv.Dir
		cmd.Stderr = pw
		ch.cmd = cmd // read only after Start returns
		if cmd.Err != nil {
			return nil, cmd.Err
		}
		return cmd, nil
	}
	st := transport.NewStdioWithOptions(srv.Command, env, srv.Args, transport.WithCommandFunc(cmdFunc))
	c.hooks.notify = st.SendNotification
	return &stdioTransport{Stdio: st, h: c.hooks}, nil
}

// InheritedEnv names the variables of toolbus's own environment that a
// stdio server inherits; nothing else of it reaches the child. toolbus's
// environment holds TOOLBUS_SECRET_KEY and often credentials meant for
// something else (a GITHUB_TOKEN, cloud keys), and any MCP server can echo
// its environment back to an agent. The list is Claude Desktop's (the MCP
// SDKs' getDefaultEnvironment), so a server configured for it runs the same
// here, plus the locale and the temp dir. A name ending in "*" is a prefix.
// A server that needs more (HTTPS_PROXY, NODE_EXTRA_CA_CERTS, an API key)
// gets it in its env, e.g. HTTPS_PROXY: env:HTTPS_PROXY.
var InheritedEnv = inheritedEnv(runtime.GOOS)

func inheritedEnv(goos string) []string {
	if goos == "windows" {
		return []string{
			"APPDATA", "HOMEDRIVE", "HOMEPATH", "LOCALAPPDATA", "PATH", "PROCESSOR_ARCHITECTURE",
			"SYSTEMDRIVE", "SYSTEMROOT", "TEMP", "TMP", "USERNAME", "USERPROFILE", "PROGRAMFILES",
		}
	}
	return []string{"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_*", "TMPDIR", "TEMP", "TMP"}
}

// stdioEnv is a stdio server's environment: the InheritedEnv entries of
// environ (as os.Environ), then configured, which wins over them. Values
// that start with "()" are skipped, as the MCP SDKs do: they are exported
// shell functions. The result is never nil (nil would inherit everything).
func stdioEnv(environ []string, configured map[string]string) []string {
	env := make([]string, 0, len(InheritedEnv)+len(configured))
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || !inherited(k) || strings.HasPrefix(v, "()") {
			continue
		}
		if _, over := configured[k]; over {
			continue
		}
		env = append(env, kv)
	}
	// exec keeps the last of duplicate keys (case-insensitively on
	// Windows), so a configured PATH wins there too.
	for _, k := range slices.Sorted(maps.Keys(configured)) {
		env = append(env, k+"="+configured[k])
	}
	return env
}

// inherited reports whether InheritedEnv names the variable k.
func inherited(k string) bool {
	eq := func(a, b string) bool { return a == b }
	if runtime.GOOS == "windows" {
		eq = strings.EqualFold // Path and PATH are one variable there
	}
	for _, n := range InheritedEnv {
		if p, ok := strings.CutSuffix(n, "*"); ok {
			if len(k) >= len(p) && eq(k[:len(p)], p) {
				return true
			}
		} else if eq(k, n) {
			return true
		}
	}
	return false
}

// ---- sse and streamable http ----

func (c *conn) newHTTP(srv registry.Server, o DialOptions, connectTimeout time.Duration) (transport.Interface, error) {
	hc := o.HTTPClient
	if hc == nil {
		hc = NewHTTPClient(0)
	}
	headers := make(map[string]string, len(srv.Headers)+1)
	maps.Copy(headers, srv.Headers)
	if srv.AuthToken != "" {
		name, value := authHeader(srv.AuthHeader, srv.AuthToken)
		headers[name] = value
	}
	if srv.Transport == registry.TransportSSE {
		opts := []transport.ClientOption{
			transport.WithHTTPClient(hc),
			transport.WithHeaders(headers),
			transport.WithEndpointTimeout(connectTimeout),
			// Calls are bounded by their context; mcp-go's 60s default
			// would cut long tool calls short.
			transport.WithResponseTimeout(24 * time.Hour),
		}
		if o.HeaderFunc != nil {
			opts = append(opts, transport.WithHeaderFunc(transport.HTTPHeaderFunc(o.HeaderFunc)))
		}
		t, err := transport.NewSSE(srv.URL, opts...)
		if err != nil {
			return nil, err
		}
		c.hooks.cancelOverHTTP = true
		c.hooks.notify = t.SendNotification
		return &sseTransport{SSE: t, h: c.hooks}, nil
	}
	opts := []transport.StreamableHTTPCOption{
		transport.WithHTTPBasicClient(hc),
		transport.WithHTTPHeaders(headers),
	}
	if o.HeaderFunc != nil {
		opts = append(opts, transport.WithHTTPHeaderFunc(transport.HTTPHeaderFunc(o.HeaderFunc)))
	}
	if o.Listen {
		// The standing GET stream is how servers before 2026-07-28 send
		// tools/list_changed; mcp-go deprecates the option because
		// 2026-07-28 replaced it (Client.Listen), and with it the session
		// stays on the earlier version, which is what Listen asks for.
		//lint:ignore SA1019 the only way to listen on protocols before 2026-07-28
		opts = append(opts, transport.WithContinuousListening())
	}
	t, err := transport.NewStreamableHTTP(srv.URL, opts...)
	if err != nil {
		return nil, err
	}
	c.hooks.cancelOverHTTP = true
	c.hooks.notify = t.SendNotification
	return newHTTPTransport(t, c.hooks, hc, srv.URL, headers, o.HeaderFunc)
}

// authHeader renders the auth token: "Authorization: Bearer <token>" unless
// another header is named, which then carries the token as it is.
func authHeader(name, token string) (string, string) {
	if name == "" || strings.EqualFold(name, "Authorization") {
		if len(token) > 7 && strings.EqualFold(token[:7], "bearer ") {
			return "Authorization", token
		}
		return "Authorization", "Bearer " + token
	}
	return name, token
}

// ---- transport wrappers ----

// hooks sit between mcp-go's client and its transport, where the request id
// is known: they send notifications/cancelled over HTTP on pre-2026
// protocols (mcp-go sends it only over stdio), and, for the pool, keep the
// code of a JSON-RPC error on tools/* requests (mcp-go keeps the message).
type hooks struct {
	rpcErrors      bool
	cancelOverHTTP bool
	notify         func(context.Context, mcp.JSONRPCNotification) error
	log            zerolog.Logger
	version        atomic.Value // string

	// closing ends with the transport's Close (wait): nothing more is
	// spawned, and what is running may stop on it.
	closing context.Context
	stop    context.CancelFunc
	mu      sync.Mutex // orders spawn's Add before wait's Wait
	wg      sync.WaitGroup
}

func newHooks(rpcErrors bool, log zerolog.Logger) *hooks {
	h := &hooks{rpcErrors: rpcErrors, log: log}
	h.closing, h.stop = context.WithCancel(context.Background())
	return h
}

// spawn runs f off the caller's path, unless the transport has closed;
// the transport's Close waits for it (wait).
func (h *hooks) spawn(f func()) {
	h.mu.Lock()
	if h.closing.Err() != nil {
		h.mu.Unlock()
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		f()
	}()
}

// wait ends closing, which stops spawn, and waits for what it started.
func (h *hooks) wait() {
	h.mu.Lock()
	h.stop()
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hooks) setVersion(v string) { h.version.Store(v) }

func (h *hooks) modern() bool {
	v, _ := h.version.Load().(string)
	return mcp.IsModernProtocol(v)
}

// cancelTimeout bounds sending notifications/cancelled.
const cancelTimeout = 2 * time.Second

func (h *hooks) after(ctx context.Context, req transport.JSONRPCRequest, resp *transport.JSONRPCResponse, err error) (*transport.JSONRPCResponse, error) {
	if err != nil {
		if h.cancelOverHTTP && ctx.Err() != nil && h.notify != nil && !h.modern() &&
			req.Method != string(mcp.MethodInitialize) && req.Method != string(mcp.MethodServerDiscover) {
			h.sendCancelled(ctx, req.ID)
		}
		return nil, err
	}
	if h.rpcErrors && resp != nil && resp.Error != nil &&
		(req.Method == string(mcp.MethodToolsCall) || req.Method == string(mcp.MethodToolsList)) {
		return nil, &rpcError{Code: resp.Error.Code, Message: resp.Error.Message}
	}
	return resp, nil
}

// sendCancelled tells the server to stop working on request id, off the
// caller's path; Close waits for it.
func (h *hooks) sendCancelled(ctx context.Context, id mcp.RequestId) {
	n := mcp.JSONRPCNotification{
		JSONRPC: mcp.JSONRPC_VERSION,
		Notification: mcp.Notification{
			Method: string(mcp.MethodNotificationCancelled),
			Params: mcp.NotificationParams{
				AdditionalFields: map[string]any{"requestId": id, "reason": ctx.Err().Error()},
			},
		},
	}
	h.spawn(func() {
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
		defer cancel()
		_ = h.notify(nctx, n)
	})
}

type stdioTransport struct {
	*transport.Stdio
	h *hooks
}

func (t *stdioTransport) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	resp, err := t.Stdio.SendRequest(ctx, req)
	return t.h.after(ctx, req, resp, err)
}

// Close closes the child's session, then waits for notifications/cancelled
// still being sent by callRaw (sendCancelled), so none outlives the pool.
func (t *stdioTransport) Close() error {
	err := t.Stdio.Close()
	t.h.wait()
	return err
}

type sseTransport struct {
	*transport.SSE
	h *hooks
}

func (t *sseTransport) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	resp, err := t.SSE.SendRequest(ctx, req)
	return t.h.after(ctx, req, resp, err)
}

func (t *sseTransport) SetProtocolVersion(v string) {
	t.h.setVersion(v)
	t.SSE.SetProtocolVersion(v)
}

func (t *sseTransport) Close() error {
	err := t.SSE.Close()
	t.h.wait()
	return err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// callRaw runs tools/call straight on the transport, on every protocol
// version: mcp-go v1.2.1 has no public way to send a request and keep its
// raw result (Client.CallTool decodes it into mcp.CallToolResult, and
// re-encoding that drops fields it does not know and adds empty ones). The
// CallToolResult comes back as the server sent it; only isError and
// resultType are read from it. On 2026-07-28 the request carries what
// mcp-go's client would add (SEP-2575 _meta: protocol version, client info
// and capabilities; SEP-2243 Mcp-Method and Mcp-Name headers). Not sent:
// Mcp-Param-* headers for tools whose schema asks for x-mcp-header.
//
// traceMeta, when set, holds the _meta members of the W3C trace context
// ("traceparent":"00-…", SEP-414), sent on every protocol version.
func (c *conn) callRaw(ctx context.Context, id uint64, tool string, args json.RawMessage, header http.Header, progressToken string, traceMeta []byte) (json.RawMessage, bool, error) {
	req, err := c.toolsCall(ctx, id, tool, args, header, progressToken, traceMeta)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.tr.SendRequest(ctx, req)
	return c.toolsCallResult(ctx, req.ID, resp, err)
}

// callRawThen is callRaw with the wait for the server's answer off the
// caller's goroutine: then gets the outcome on a goroutine of its own
// (httpTransport.callThen's, over streamable HTTP; a new one over the other
// transports).
func (c *conn) callRawThen(ctx context.Context, id uint64, tool string, args json.RawMessage, header http.Header, progressToken string, traceMeta []byte, then func(json.RawMessage, bool, error)) {
	req, err := c.toolsCall(ctx, id, tool, args, header, progressToken, traceMeta)
	rid := req.ID
	switch t, ok := c.tr.(*httpTransport); {
	case err != nil:
		go then(nil, false, err)
	case ok:
		t.callThen(ctx, req, func(resp *transport.JSONRPCResponse, err error) {
			then(c.toolsCallResultSafely(ctx, rid, resp, err))
		})
	default:
		go func() {
			resp, err := safely(func() (*transport.JSONRPCResponse, error) { return c.tr.SendRequest(ctx, req) })
			then(c.toolsCallResultSafely(ctx, rid, resp, err))
		}()
	}
}

// toolsCallResultSafely is toolsCallResult on a goroutine of the pool's: a
// panic (a bug) is the call's error (bugError), not the process's end.
func (c *conn) toolsCallResultSafely(ctx context.Context, id mcp.RequestId, resp *transport.JSONRPCResponse, sendErr error) (json.RawMessage, bool, error) {
	var isErr bool
	raw, err := safely(func() (raw json.RawMessage, err error) {
		raw, isErr, err = c.toolsCallResult(ctx, id, resp, sendErr)
		return raw, err
	})
	if err != nil {
		return nil, false, err
	}
	return raw, isErr, nil
}

// toolsCall is the tools/call request of callRaw.
func (c *conn) toolsCall(ctx context.Context, id uint64, tool string, args json.RawMessage, header http.Header, progressToken string, traceMeta []byte) (transport.JSONRPCRequest, error) {
	if len(args) > 0 && !json.Valid(args) {
		// Spliced into the request's text below, they would rewrite it:
		// `{},"name":"other"` calls another tool.
		return transport.JSONRPCRequest{}, &rpcError{Code: mcp.INVALID_PARAMS, Message: "the arguments are not valid JSON"}
	}
	name, _ := json.Marshal(tool)
	p := make([]byte, 0, len(args)+len(name)+len(c.modernMeta)+len(traceMeta)+64)
	p = append(p, `{"name":`...)
	p = append(p, name...)
	if len(args) > 0 {
		p = append(p, `,"arguments":`...)
		p = append(p, args...)
	}
	if progressToken != "" || c.modernMeta != nil || traceMeta != nil {
		p = append(p, `,"_meta":{`...)
		sep := false
		if progressToken != "" {
			tok, _ := json.Marshal(progressToken)
			p = append(p, `"progressToken":`...)
			p = append(p, tok...)
			sep = true
		}
		for _, m := range [2][]byte{traceMeta, c.modernMeta} {
			if m == nil {
				continue
			}
			if sep {
				p = append(p, ',')
			}
			p = append(p, m...)
			sep = true
		}
		p = append(p, '}')
	}
	p = append(p, '}')
	if c.modernMeta != nil && c.child == nil {
		if header == nil {
			header = make(http.Header, 2)
		}
		header.Set(mcp.HeaderMethod, string(mcp.MethodToolsCall))
		if v, ok := mcp.EncodeHeaderValue(tool); ok {
			header.Set(mcp.HeaderName, v)
		}
	}
	req := transport.JSONRPCRequest{
		JSONRPC: mcp.JSONRPC_VERSION,
		// A string id never collides with mcp-go's own numeric ids.
		ID:     mcp.NewRequestId("tb-" + strconv.FormatUint(id, 36)),
		Method: string(mcp.MethodToolsCall),
		Params: json.RawMessage(p),
		Header: header,
	}
	return req, ctx.Err()
}

// toolsCallResult is callRaw's outcome from the transport's answer to the
// request id.
func (c *conn) toolsCallResult(ctx context.Context, id mcp.RequestId, resp *transport.JSONRPCResponse, err error) (json.RawMessage, bool, error) {
	if err != nil {
		var re *rpcError
		var bug *bugErr
		if errors.As(err, &re) || errors.As(err, &bug) {
			return nil, false, err
		}
		if ctx.Err() != nil && c.child != nil && c.hooks.notify != nil {
			c.hooks.sendCancelled(ctx, id) // over HTTP, hooks.after already did
		}
		return nil, false, transport.NewError(err)
	}
	if resp.Error != nil {
		return nil, false, &rpcError{Code: resp.Error.Code, Message: resp.Error.Message}
	}
	isError, resultType, err := resultFlags(resp.Result)
	if err != nil {
		return nil, false, fmt.Errorf("tools/call answer is not a CallToolResult: %w", err)
	}
	if resultType == mcp.ResultTypeInputRequired {
		// toolbus has no person or model to ask (no sampling, elicitation
		// or roots handler), as mcp-go's client would refuse too.
		return nil, false, &rpcError{Code: mcp.INVALID_REQUEST, Message: "the tool asked the client for input (elicitation, sampling or roots), which toolbus cannot give"}
	}
	return resp.Result, isError, nil
}

// setModernMeta prepares the _meta members a 2026-07-28 request carries
// (SEP-2575), once per session, after the handshake fixed the version.
func (c *conn) setModernMeta(version string) {
	if !mcp.IsModernProtocol(version) {
		c.modernMeta = nil
		return
	}
	meta := map[string]any{
		mcp.MetaKeyProtocolVersion:    version,
		mcp.MetaKeyClientCapabilities: c.client.GetClientCapabilities(),
		mcp.MetaKeyClientInfo:         mcp.Implementation{Name: clientName, Version: "1"},
	}
	b, _ := json.Marshal(meta)
	c.modernMeta = b[1 : len(b)-1] // the members, without the braces
}
