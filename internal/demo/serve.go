package demo

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/server"
)

// Transports the demo server speaks.
const (
	TransportStdio = "stdio"
	TransportSSE   = "sse"
	TransportHTTP  = "http"
)

// Endpoint paths of the HTTP transports.
const (
	// PathMCP is the streamable HTTP endpoint.
	PathMCP = "/mcp"
	// PathSSE is the SSE stream of the legacy HTTP+SSE transport.
	PathSSE = "/sse"
	// PathMessage is where SSE clients post their messages.
	PathMessage = "/message"
)

// DefaultAddr is the listen address of the HTTP transports when none is given.
const DefaultAddr = "127.0.0.1:7801"

// shutdownGrace bounds how long a stopping HTTP server waits for in-flight
// calls before it closes their connections (which cancels their handlers).
const shutdownGrace = 5 * time.Second

// ErrUnknownTransport is returned for a transport other than stdio, sse or http.
var ErrUnknownTransport = errors.New("demo: unknown transport")

// RunOptions configures Run.
type RunOptions struct {
	// Transport is "stdio", "sse" or "http" (streamable HTTP). Default: stdio.
	Transport string
	// Addr is the listen address of the sse and http transports.
	// Default: DefaultAddr.
	Addr string
	// Options configures the tools.
	Options
}

func (o *RunOptions) setDefaults() {
	if o.Transport == "" {
		o.Transport = TransportStdio
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
}

// Run serves the demo server until ctx ends: over stdio on os.Stdin and
// os.Stdout (until stdin closes, too), or over SSE or streamable HTTP on
// o.Addr. It returns nil when ctx ends. On stdio nothing but the protocol is
// written to stdout; diagnostics go to stderr.
func Run(ctx context.Context, o RunOptions) error {
	o.setDefaults()
	switch o.Transport {
	case TransportStdio:
		return runStdio(ctx, o.Options)
	case TransportSSE, TransportHTTP:
		h, err := listen(o.Transport, o.Addr, o.Options)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "toolbus-demo: serving %s at %s\n", o.Transport, h.url)
		select {
		case <-ctx.Done():
			return h.stop()
		case <-h.done:
			return h.stop()
		}
	default:
		return fmt.Errorf("%w %q (want stdio, sse or http)", ErrUnknownTransport, o.Transport)
	}
}

func runStdio(ctx context.Context, o Options) error {
	s := server.NewStdioServer(NewServer(o))
	s.SetErrorLogger(log.New(os.Stderr, "toolbus-demo: ", log.LstdFlags))
	// mcp-go runs 5 tool calls at once on stdio by default; the demo should
	// let a worker pipeline many.
	server.WithWorkerPoolSize(100)(s)
	server.WithQueueSize(1000)(s)
	err := s.Listen(ctx, os.Stdin, os.Stdout)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// Serve starts the demo server over SSE (transport "sse") or streamable HTTP
// ("http") on addr, which may be "127.0.0.1:0", and returns once it is
// listening. url is the endpoint a client connects to: http://HOST:PORT/mcp
// or http://HOST:PORT/sse. stop shuts the server down and waits for it; it
// may be called more than once. The server also stops when ctx ends.
func Serve(ctx context.Context, transport, addr string, o Options) (url string, stop func(), err error) {
	h, err := listen(transport, addr, o)
	if err != nil {
		return "", nil, err
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = h.stop()
		case <-stopped:
		}
	}()
	var once sync.Once
	return h.url, func() {
		_ = h.stop()
		once.Do(func() { close(stopped) })
	}, nil
}

// httpServer is a demo server listening on an HTTP transport.
type httpServer struct {
	url      string
	srv      *http.Server
	shutdown func(context.Context) error // the mcp-go transport's Shutdown
	done     chan struct{}               // closed when Serve returns
	serveErr error                       // set before done closes

	stopOnce sync.Once
	stopErr  error
}

func listen(transport, addr string, o Options) (*httpServer, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	mux := http.NewServeMux()
	srv := newHTTPServer(mux)
	mcpSrv := NewServer(o)
	h := &httpServer{srv: srv, done: make(chan struct{})}
	var path string
	switch transport {
	case TransportHTTP:
		t := server.NewStreamableHTTPServer(mcpSrv,
			server.WithEndpointPath(PathMCP),
			server.WithStreamableHTTPServer(srv),
		)
		mux.Handle(PathMCP, t)
		h.shutdown, path = t.Shutdown, PathMCP
	case TransportSSE:
		t := server.NewSSEServer(mcpSrv,
			server.WithSSEEndpoint(PathSSE),
			server.WithMessageEndpoint(PathMessage),
			server.WithHTTPServer(srv),
		)
		mux.Handle(PathSSE, t.SSEHandler())
		mux.Handle(PathMessage, t.MessageHandler())
		h.shutdown, path = t.Shutdown, PathSSE
	default:
		return nil, fmt.Errorf("%w %q (want sse or http)", ErrUnknownTransport, transport)
	}

	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 30 * time.Second, Interval: 15 * time.Second, Count: 4,
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo: listen %s: %w", addr, err)
	}
	h.url = "http://" + dialable(ln.Addr()) + path
	go func() {
		defer close(h.done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			h.serveErr = err
		}
	}()
	return h, nil
}

// newHTTPServer returns an http.Server for many concurrent, long-lived
// keep-alive connections: no read or write timeouts (tool calls and SSE
// streams run as long as they need), a bound on slow headers, and idle
// connections kept long enough for pooled clients to reuse them.
//
// It also speaks HTTP/2 without TLS (h2c, prior knowledge) beside
// HTTP/1.1, so a client may multiplex every concurrent call over one
// connection instead of holding one connection per call in flight.
func newHTTPServer(h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(os.Stderr, "toolbus-demo: http: ", log.LstdFlags),
		Protocols:         &protocols,
	}
}

// stop shuts the server down, giving in-flight calls shutdownGrace before
// their connections are closed, and waits for Serve to return.
func (h *httpServer) stop() error {
	h.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := h.shutdown(ctx); err != nil {
			_ = h.srv.Close()
		}
		<-h.done
		h.stopErr = h.serveErr
	})
	return h.stopErr
}

// dialable returns addr as host:port a client can dial: an unspecified
// listen address (":0", "0.0.0.0", "::") becomes 127.0.0.1, which a
// dual-stack listener also accepts.
func dialable(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tcp.Port}).String()
}
