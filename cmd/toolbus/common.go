package main

import (
	"flag"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// connFlags are the NATS connection flags every client command takes.
type connFlags struct {
	cfg broker.ConnConfig
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	c := &connFlags{}
	def := os.Getenv("NATS_URL")
	if def == "" {
		def = broker.DefaultURL
	}
	fs.StringVar(&c.cfg.URL, "nats-url", def, "NATS server URL(s), comma-separated (env NATS_URL)")
	fs.StringVar(&c.cfg.User, "nats-user", os.Getenv("NATS_USER"), "NATS user (env NATS_USER)")
	fs.StringVar(&c.cfg.Password, "nats-password", os.Getenv("NATS_PASSWORD"), "NATS password (env NATS_PASSWORD)")
	fs.StringVar(&c.cfg.Token, "nats-token", os.Getenv("NATS_TOKEN"), "NATS token (env NATS_TOKEN)")
	fs.StringVar(&c.cfg.Creds, "nats-creds", os.Getenv("NATS_CREDS"), "NATS .creds file (env NATS_CREDS)")
	fs.StringVar(&c.cfg.NKeyFile, "nats-nkey", os.Getenv("NATS_NKEY"), "NATS NKey seed file (env NATS_NKEY)")
	fs.StringVar(&c.cfg.TLSCA, "nats-ca", os.Getenv("NATS_CA"), "CA certificate for NATS TLS (env NATS_CA)")
	fs.StringVar(&c.cfg.TLSCert, "nats-cert", os.Getenv("NATS_CERT"), "client certificate for NATS TLS (env NATS_CERT)")
	fs.StringVar(&c.cfg.TLSKey, "nats-key", os.Getenv("NATS_KEY"), "client key for NATS TLS (env NATS_KEY)")
	fs.StringVar(&c.cfg.InboxPrefix, "nats-inbox-prefix", os.Getenv("NATS_INBOX_PREFIX"), "inbox prefix for JetStream replies (env NATS_INBOX_PREFIX; default for agent commands: _INBOX.<agent>, as nats.conf grants)")
	return c
}

// agent returns the agent an agent command acts as: the flag, else the NATS
// user when it is a valid agent id, else subjects.DefaultAgent. Unless an
// inbox prefix was given, the connection's inbox becomes _INBOX.<agent>,
// the one the agent's NATS permissions let it subscribe to.
func (c *connFlags) agent(flagValue string) string {
	a := flagValue
	if a == "" {
		a = subjects.DefaultAgent
		user := c.cfg.User
		if u, err := url.Parse(strings.Split(c.cfg.URL, ",")[0]); user == "" && err == nil && u.User != nil {
			user = u.User.Username()
		}
		if subjects.ValidateAgent(user) == nil {
			a = user
		}
	}
	if c.cfg.InboxPrefix == "" && subjects.ValidateAgent(a) == nil {
		c.cfg.InboxPrefix = "_INBOX." + a
	}
	return a
}

// connect dials NATS and opens JetStream.
func (c *connFlags) connect(name string, log zerolog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	cfg := c.cfg
	cfg.Name = name
	nc, err := broker.Connect(cfg, log, nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// newLogger writes human-readable logs to stderr on a terminal, JSON
// otherwise, at the given level (debug, info, warn, error).
func newLogger(level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	var w = zerolog.New(os.Stderr)
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		w = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	}
	return w.Level(lvl).With().Timestamp().Logger()
}
