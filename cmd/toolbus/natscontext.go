package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/toolbus-dev/toolbus/internal/broker"
)

// natsContext is a natscli context file (nats context save NAME ...), as
// natscli writes it to ~/.config/nats/context/NAME.json.
type natsContext struct {
	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Token       string `json:"token"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`

	// Settings toolbus cannot honour: a context that sets one is refused
	// rather than half applied.
	NSC         string `json:"nsc"`
	UserJWT     string `json:"user_jwt"`
	UserSeed    string `json:"user_seed"`
	SocksProxy  string `json:"socks_proxy"`
	TLSFirst    bool   `json:"tls_first"`
	JSDomain    string `json:"jetstream_domain"`
	JSAPIPrefix string `json:"jetstream_api_prefix"`
	WinCert     string `json:"windows_cert_store"`
}

// loadNATSContext reads the natscli context name: a path to a .json file,
// or a name looked up under $XDG_CONFIG_HOME/nats/context (default
// ~/.config), as natscli does. toolbus reads a context only when named
// (--context or NATS_CONTEXT), never the one `nats context select` chose.
func loadNATSContext(name string, getenv func(string) string) (*natsContext, error) {
	path := name
	if !strings.HasSuffix(name, ".json") || !fileExists(name) {
		if name == "" || strings.Contains(name, "..") || strings.ContainsAny(name, `/\`) {
			return nil, fmt.Errorf("NATS context %q: not a context name (nor an existing .json file)", name)
		}
		dir := getenv("XDG_CONFIG_HOME")
		if dir == "" {
			home := getenv("HOME")
			if home == "" {
				var err error
				if home, err = os.UserHomeDir(); err != nil {
					return nil, fmt.Errorf("NATS context %q: %w", name, err)
				}
			}
			dir = filepath.Join(home, ".config")
		}
		path = filepath.Join(dir, "nats", "context", name+".json")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("unknown NATS context %q: no file %s (create it with: nats context save %s --server URL ...)", name, path, name)
	}
	if err != nil {
		return nil, fmt.Errorf("NATS context %q: %w", name, err)
	}
	c := &natsContext{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("NATS context %q: %s is not a natscli context: %w", name, path, err)
	}
	for setting, set := range map[string]bool{
		"nsc": c.NSC != "", "user_jwt": c.UserJWT != "", "user_seed": c.UserSeed != "",
		"socks_proxy": c.SocksProxy != "", "tls_first": c.TLSFirst,
		"jetstream_domain": c.JSDomain != "", "jetstream_api_prefix": c.JSAPIPrefix != "",
		"windows_cert_store": c.WinCert != "",
	} {
		if set {
			return nil, fmt.Errorf("NATS context %q (%s) sets %s, which toolbus does not support; use a context without it, or the --nats-* flags", name, path, setting)
		}
	}
	for _, p := range []*string{&c.Creds, &c.NKey, &c.Cert, &c.Key, &c.CA} {
		*p = expandPath(*p, getenv)
	}
	return c, nil
}

// fill sets every setting of cfg that is empty (not given by flag or
// environment) from the context.
func (c *natsContext) fill(cfg *broker.ConnConfig) {
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&cfg.URL, c.URL}, {&cfg.User, c.User}, {&cfg.Password, c.Password},
		{&cfg.Creds, c.Creds}, {&cfg.NKeyFile, c.NKey}, {&cfg.Token, c.Token},
		{&cfg.TLSCert, c.Cert}, {&cfg.TLSKey, c.Key}, {&cfg.TLSCA, c.CA},
		{&cfg.InboxPrefix, c.InboxPrefix},
	} {
		if *f.dst == "" {
			*f.dst = f.v
		}
	}
}

// expandPath expands environment variables and a leading ~ in a context's
// file path, as natscli does.
func expandPath(p string, getenv func(string) string) string {
	p = os.Expand(p, getenv)
	if rest, ok := strings.CutPrefix(p, "~"); ok {
		home := getenv("HOME")
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		p = home + rest
	}
	return p
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}
