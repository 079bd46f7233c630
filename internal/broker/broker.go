// Package broker owns toolbus's connection to NATS: the embedded nats-server
// (JetStream on a data directory) used by default on one machine, the
// connection options for an external server or cluster, and provisioning of
// the streams, consumer and KV buckets that package subjects defines.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/streams"
	"github.com/toolbus-dev/toolbus/subjects"
)

// DefaultURL is where clients look for NATS when neither --nats-url nor
// NATS_URL says otherwise: the embedded server's default address.
const DefaultURL = "nats://127.0.0.1:4222"

// DefaultMaxPayload is the embedded server's max_payload (8 MiB): large tool
// results fit, and anything larger gets a clear too_large error.
const DefaultMaxPayload = 8 << 20

// EmbeddedConfig configures the in-process nats-server.
type EmbeddedConfig struct {
	// Host and Port to listen on for other processes (default 127.0.0.1:4222).
	// Port -1 picks a free port; Port 0 means the default.
	Host string
	Port int
	// DataDir holds JetStream's files (default ./data).
	DataDir string
	// MaxPayload in bytes (default 8 MiB).
	MaxPayload int32
	// NoListen keeps the server off the network: only in-process clients.
	NoListen bool
	// SyncAlways fsyncs every JetStream write before acknowledging it, so a
	// killed process or a lost machine forgets nothing it confirmed. Off,
	// writes reach the disk within the sync interval (2 minutes).
	SyncAlways bool
	// MonitorAddr, when set (host:port), serves nats-server's HTTP
	// monitoring endpoints (/varz, /jsz, /connz, ...) there, for
	// nats-surveyor, the Prometheus NATS exporter and `nats server` tools.
	MonitorAddr string
}

// Embedded is a running in-process nats-server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts nats-server in this process with JetStream on
// cfg.DataDir and waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig, log zerolog.Logger) (*Embedded, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = 4222
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir %q: %w", cfg.DataDir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if !cfg.NoListen && cfg.Port > 0 {
		// Say at once that the port is taken, rather than after the
		// server's start-up timeout.
		addr := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: cannot listen on %s (another toolbus serve or nats-server?): %v; pick --port, or point --nats-url at the running server", addr, err)
		}
		l.Close()
	}
	opts := &server.Options{
		ServerName:         "toolbus",
		Host:               cfg.Host,
		Port:               cfg.Port,
		JetStream:          true,
		StoreDir:           dir,
		MaxPayload:         cfg.MaxPayload,
		DontListen:         cfg.NoListen,
		NoSigs:             true,
		NoLog:              true,
		JetStreamMaxMemory: 256 << 20,
		SyncAlways:         cfg.SyncAlways,
	}
	if cfg.MonitorAddr != "" {
		host, port, err := net.SplitHostPort(cfg.MonitorAddr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: monitor address %q: want host:port (e.g. 127.0.0.1:8222): %v", cfg.MonitorAddr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("embedded NATS: monitor address %q: port %q is not a port number", cfg.MonitorAddr, port)
		}
		if p == 0 {
			p = -1 // any free port, as net.Listen reads port 0
		}
		opts.HTTPHost, opts.HTTPPort = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		if !cfg.NoListen {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("embedded NATS: %s:%d is already in use (another toolbus serve or nats-server?); pick --port or point --nats-url at it", cfg.Host, cfg.Port)
			}
		}
		return nil, errors.New("embedded NATS did not become ready in 15s")
	}
	e := &Embedded{srv: srv}
	ev := log.Info().Str("url", srv.ClientURL()).Str("data_dir", dir)
	if u := e.MonitorURL(); u != "" {
		ev = ev.Str("monitor", u)
	}
	ev.Msg("embedded NATS with JetStream ready")
	return e, nil
}

// ClientURL is the address other processes connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// MonitorURL is the base URL of the monitoring endpoints ("" when off).
func (e *Embedded) MonitorURL() string {
	a := e.srv.MonitorAddr()
	if a == nil {
		return ""
	}
	return "http://" + a.String()
}

// Connect opens an in-process connection: no TCP, about 1.5x the publish rate.
func (e *Embedded) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1)}, extra...)
	return nats.Connect("", opts...)
}

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// ConnConfig is how a process reaches an external NATS server or cluster.
type ConnConfig struct {
	URL      string // comma-separated; default DefaultURL
	User     string
	Password string
	Token    string
	Creds    string // a .creds file (JWT + NKey)
	NKeyFile string
	TLSCA    string
	TLSCert  string
	TLSKey   string
	Name     string // connection name shown by the server
	// InboxPrefix replaces "_INBOX" for this connection's replies, so NATS
	// permissions can give each agent an inbox of its own ("_INBOX.agent1").
	InboxPrefix string
}

// Connect dials NATS with reconnects forever (with jitter), logging each
// disconnect and reconnect: a restarted server never needs a restarted worker.
func Connect(cfg ConnConfig, log zerolog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	url := cfg.URL
	if url == "" {
		url = DefaultURL
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("NATS disconnected; reconnecting")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey file %q: %w", cfg.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w (is `toolbus serve` running, or NATS_URL / --nats-url set?)", redactURLs(url), err)
	}
	return nc, nil
}

// Provision creates or updates every stream, the workers' consumer and the
// KV buckets to match o and consumer. It is idempotent; `toolbus serve`
// runs it at every start.
func Provision(ctx context.Context, js jetstream.JetStream, o streams.Options, consumer jetstream.ConsumerConfig) error {
	return provision(ctx, js, o, consumer, true)
}

// Ensure creates what is missing and leaves what exists as it is: a worker
// started with other settings does not rewrite the streams or the shared
// consumer the rest of the fleet runs on.
func Ensure(ctx context.Context, js jetstream.JetStream, o streams.Options, consumer jetstream.ConsumerConfig) error {
	return provision(ctx, js, o, consumer, false)
}

func provision(ctx context.Context, js jetstream.JetStream, o streams.Options, consumer jetstream.ConsumerConfig, update bool) error {
	for _, cfg := range streams.Streams(o) {
		var err error
		if update {
			_, err = js.CreateOrUpdateStream(ctx, cfg)
		} else if _, err = js.Stream(ctx, cfg.Name); errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, cfg)
		}
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	var err error
	if update {
		_, err = js.CreateOrUpdateConsumer(ctx, subjects.StreamCalls, consumer)
	} else {
		_, err = GetOrCreateConsumer(ctx, js, subjects.StreamCalls, consumer)
	}
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", consumer.Durable, subjects.StreamCalls, err)
	}
	for _, cfg := range streams.Buckets(o) {
		var err error
		if update {
			_, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		} else if _, err = js.KeyValue(ctx, cfg.Bucket); errors.Is(err, jetstream.ErrBucketNotFound) {
			_, err = js.CreateKeyValue(ctx, cfg)
		}
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("KV bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// GetOrCreateConsumer returns the durable consumer as it is, creating it
// from cfg only when it does not exist.
func GetOrCreateConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, stream, cfg.Durable)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return c, err
	}
	c, err = js.CreateConsumer(ctx, stream, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return js.Consumer(ctx, stream, cfg.Durable)
	}
	return c, err
}

// EnsureWakeConsumer creates agent's durable wake-up consumer on EVENTS
// if it is missing (streams.WakeConsumerConfig), so wake-ups published
// from now on wait for the agent even while it is offline.
func EnsureWakeConsumer(ctx context.Context, js jetstream.JetStream, agent string) error {
	if err := subjects.ValidateAgent(agent); err != nil {
		return err
	}
	_, err := GetOrCreateConsumer(ctx, js, subjects.StreamEvents, streams.WakeConsumerConfig(agent))
	return err
}

// redactURLs hides passwords in a comma-separated list of NATS URLs.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		u = strings.TrimSpace(u)
		if p, err := url.Parse(u); err == nil && p.Host != "" {
			u = p.Redacted()
		}
		parts[i] = u
	}
	return strings.Join(parts, ",")
}
