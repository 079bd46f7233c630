package main

import (
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/toolbus-dev/toolbus/internal/broker"
	"github.com/toolbus-dev/toolbus/subjects"
)

// envAnnotation names the environment variable that gives a flag its
// default (see envFlag and applyEnv).
const envAnnotation = "toolbus_env"

// envFlag makes the environment variable env the default of flag name in fs
// and says so in its help.
func envFlag(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	f.Usage += " (env " + env + ")"
	_ = fs.SetAnnotation(name, envAnnotation, []string{env})
}

// applyEnv is the one place the environment reaches flags: every flag of
// cmd made with envFlag and not given on the command line takes its
// variable's value, when set. The flag still counts as not given
// (Changed is false), so explicit flags and environment stay apart.
func applyEnv(cmd *cobra.Command, getenv func(string) string) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		env := f.Annotations[envAnnotation]
		if err != nil || f.Changed || len(env) == 0 {
			return
		}
		if v := getenv(env[0]); v != "" {
			if serr := f.Value.Set(v); serr != nil {
				err = usagef("%s=%q: %v", env[0], v, serr)
			}
		}
	})
	return err
}

// connFlags are the NATS connection flags, persistent on the root so every
// command takes them.
type connFlags struct {
	flags   *pflag.FlagSet
	cfg     broker.ConnConfig // from flags or environment
	context string            // a natscli context name or .json file
}

func (c *connFlags) register(fs *pflag.FlagSet) {
	c.flags = fs
	for _, f := range []struct {
		dst       *string
		name, env string
		usage     string
	}{
		{&c.cfg.URL, "nats-url", "NATS_URL", "NATS server URL(s), comma-separated (default " + broker.DefaultURL + ")"},
		{&c.cfg.User, "nats-user", "NATS_USER", "NATS user"},
		{&c.cfg.Password, "nats-password", "NATS_PASSWORD", "NATS password"},
		{&c.cfg.Token, "nats-token", "NATS_TOKEN", "NATS token"},
		{&c.cfg.Creds, "nats-creds", "NATS_CREDS", "NATS .creds file"},
		{&c.cfg.NKeyFile, "nats-nkey", "NATS_NKEY", "NATS NKey seed file"},
		{&c.cfg.TLSCA, "nats-ca", "NATS_CA", "CA certificate for NATS TLS"},
		{&c.cfg.TLSCert, "nats-cert", "NATS_CERT", "client certificate for NATS TLS"},
		{&c.cfg.TLSKey, "nats-key", "NATS_KEY", "client key for NATS TLS"},
		{&c.cfg.InboxPrefix, "nats-inbox-prefix", "NATS_INBOX_PREFIX", "inbox prefix for JetStream replies (default for agent commands: _INBOX.<agent>, as nats.conf grants)"},
		{&c.context, "context", "NATS_CONTEXT", "natscli context: NAME reads ~/.config/nats/context/NAME.json ($XDG_CONFIG_HOME honoured), or a path to a .json file"},
	} {
		fs.StringVar(f.dst, f.name, "", f.usage)
		envFlag(fs, f.name, f.env)
	}
}

// explicit reports whether the command line (not the environment) says
// where NATS is: --nats-url or --context.
func (c *connFlags) explicit() bool {
	return c.flags.Changed("nats-url") || c.flags.Changed("context")
}

// resolve returns the connection settings: each from its flag or
// environment variable, else from the NATS context, else (the URL) from
// fileURL, nats.url of toolbus.yaml, else broker.DefaultURL.
func (a *app) resolve(fileURL string) (broker.ConnConfig, error) {
	cfg := a.conn.cfg
	if a.conn.context != "" {
		nc, err := loadNATSContext(a.conn.context, a.getenv)
		if err != nil {
			return cfg, err
		}
		nc.fill(&cfg)
	}
	if cfg.URL == "" {
		cfg.URL = fileURL
	}
	if cfg.URL == "" {
		cfg.URL = broker.DefaultURL
	}
	return cfg, nil
}

// agent returns the agent an agent command acts as: the flag, else the NATS
// user when it is a valid agent id, else subjects.DefaultAgent. Unless an
// inbox prefix was given, cfg's inbox becomes _INBOX.<agent>, the one the
// agent's NATS permissions let it subscribe to.
func agentOf(cfg *broker.ConnConfig, flagValue string) string {
	a := flagValue
	if a == "" {
		a = subjects.DefaultAgent
		user := cfg.User
		if u, err := url.Parse(strings.Split(cfg.URL, ",")[0]); user == "" && err == nil && u.User != nil {
			user = u.User.Username()
		}
		if subjects.ValidateAgent(user) == nil {
			a = user
		}
	}
	if cfg.InboxPrefix == "" && subjects.ValidateAgent(a) == nil {
		cfg.InboxPrefix = "_INBOX." + a
	}
	return a
}

// dial connects with cfg under the connection name name and opens JetStream.
func dial(cfg broker.ConnConfig, name string, log zerolog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	cfg.Name = name
	nc, err := broker.Connect(cfg, log, append([]nats.Option{nats.Timeout(5 * time.Second)}, extra...)...)
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

// connect is the client commands' connection: flags, environment and
// context resolved, then dialled.
func (a *app) connect(name string, log zerolog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	cfg, err := a.resolve("")
	if err != nil {
		return nil, nil, err
	}
	return dial(cfg, name, log)
}

// connectAs is connect for a command that acts as an agent (see agentOf).
func (a *app) connectAs(name, agentFlag string, log zerolog.Logger) (*nats.Conn, jetstream.JetStream, string, error) {
	cfg, err := a.resolve("")
	if err != nil {
		return nil, nil, "", err
	}
	who := agentOf(&cfg, agentFlag)
	nc, js, err := dial(cfg, name, log)
	return nc, js, who, err
}
