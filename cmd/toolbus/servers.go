package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/catalogsync"
	"github.com/toolbus-dev/toolbus/internal/registry"
	"github.com/toolbus-dev/toolbus/subjects"
)

// Which wins, the config file or `servers add`: `toolbus serve` upserts the
// servers of its config file into the registry at start, so the file wins
// at every start; `servers add` / `servers rm` change the registry at once
// and last until the next start that lists the same name. A server added
// only with `servers add` stays until `servers rm`.

// pairFlags collects repeated Name=value flags (--env, --header); unlike
// pflag's StringToString it never splits a value on commas.
type pairFlags map[string]string

func (p pairFlags) String() string { return "" }

func (p pairFlags) Type() string { return "NAME=value" }

func (p pairFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=value, got %q", v)
	}
	p[k] = val
	return nil
}

const serversLong = `Register, list, show or remove MCP servers.

Secrets (--auth-token, headers and env under names like Authorization,
X-Api-Key, *TOKEN*, *SECRET*, *KEY*; passwords and api keys in URLs, in url,
env values and args; secret flag values such as --api-key=...) are stored
encrypted under $TOOLBUS_SECRET_KEY
(32 bytes, base64: openssl rand -base64 32), or give references such as
env:GITHUB_TOKEN, read where the server is dialed. They are never printed.
toolbus serve upserts its config file's servers at every start, so for a name
in both, the file wins at the next start.`

func newServersCmd(a *app) *cobra.Command {
	return group(&cobra.Command{
		Use:   "servers <command>",
		Short: "register, list, show or remove MCP servers",
		Long:  serversLong,
		Example: `  toolbus servers add search --transport http --url http://127.0.0.1:9000/mcp --auth-token env:SEARCH_TOKEN
  toolbus servers list
  toolbus servers rm search`,
	}, newServersAddCmd(a), newServersListCmd(a), newServersShowCmd(a), newServersRmCmd(a))
}

// registryConn is an open registry and the connection under it.
type registryConn struct {
	*registry.Registry
	nc *nats.Conn
	js jetstream.JetStream
}

func (r *registryConn) Close() { r.nc.Close() }

// openRegistry connects and opens the registry.
func (a *app) openRegistry(cmd *cobra.Command, name string, opts ...registry.Option) (*registryConn, error) {
	ctx := cmd.Context()
	log := newLogger(cmd.ErrOrStderr(), "warn")
	nc, js, err := a.connect(name, log)
	if err != nil {
		return nil, err
	}
	reg, err := registry.New(ctx, js, append([]registry.Option{registry.WithLogger(log)}, opts...)...)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &registryConn{Registry: reg, nc: nc, js: js}, nil
}

func newServersAddCmd(a *app) *cobra.Command {
	var (
		srv                         registry.Server
		transport                   string
		argv                        []string
		envs, hdrs                  = pairFlags{}, pairFlags{}
		connectTimeout, callTimeout time.Duration
		local, noWait               bool
		wait                        time.Duration
	)
	cmd := &cobra.Command{
		Use:     "add <name> ['{\"transport\":\"http\",\"url\":...}']",
		Aliases: []string{"put"},
		Short:   "register an MCP server and wait for its first sync",
		Long: serversLong + `

servers add waits for the first sync and exits 1 when it fails or no sync
replica answers (the server stays registered and is retried at the next
resync); --no-wait exits 0 once the server is registered. Flags given
explicitly win over the JSON.`,
		Example: `  toolbus servers add search --transport http --url http://127.0.0.1:9000/mcp --auth-token env:SEARCH_TOKEN
  toolbus servers add fs --command npx --arg -y --arg @modelcontextprotocol/server-filesystem --arg /tmp
  toolbus servers add gh '{"transport":"http","url":"https://api.githubcopilot.com/mcp/"}' --header Authorization=env:GH_AUTH
  toolbus servers add slow --command ./server --no-wait`,
		Args: wantArgs(1, 2, "<name> and optionally a JSON object"),
		RunE: func(cmd *cobra.Command, rest []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if local && (noWait || wait <= 0) {
				return usagef("--local runs the first sync here and waits for it; drop --no-wait, or --local to let the sync replicas run it")
			}
			if len(rest) == 2 {
				var js registry.Server
				dec := json.NewDecoder(strings.NewReader(rest[1]))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&js); err != nil {
					return usagef("the server JSON: %v", err)
				}
				// Flags given explicitly win over the JSON.
				merge(&js, srv, cmd.Flags().Changed)
				srv = js
				if cmd.Flags().Changed("transport") {
					srv.Transport = registry.Transport(transport)
				}
			} else if transport != "" {
				srv.Transport = registry.Transport(transport)
			}
			srv.Name = rest[0]
			if len(argv) > 0 {
				srv.Args = argv
			}
			if len(envs) > 0 {
				srv.Env = envs
			}
			if len(hdrs) > 0 {
				srv.Headers = hdrs
			}
			if connectTimeout > 0 {
				srv.ConnectTimeout = subjects.Duration(connectTimeout)
			}
			if callTimeout > 0 {
				srv.CallTimeout = subjects.Duration(callTimeout)
			}
			if srv.Transport == "" {
				switch {
				case srv.Command != "":
					srv.Transport = registry.TransportStdio
				case strings.HasSuffix(strings.TrimRight(srv.URL, "/"), "/sse"):
					srv.Transport = registry.TransportSSE
				case srv.URL != "":
					srv.Transport = registry.TransportHTTP
				}
			}
			var opts []registry.Option
			if local {
				opts = append(opts, registry.WithoutResyncOnPut())
			}
			reg, err := a.openRegistry(cmd, "toolbus servers add", opts...)
			if err != nil {
				return err
			}
			defer reg.Close()
			before, _ := reg.Status(ctx, srv.Name)
			if err := reg.Put(ctx, srv); err != nil {
				return err
			}
			fmt.Fprintf(out, "registered %s (%s)\n", srv.Name, srv.Transport)
			if local {
				s := catalogsync.New(reg.js, reg.Registry, catalogsync.Config{}, catalogsync.WithLogger(newLogger(cmd.ErrOrStderr(), "error")))
				d, err := s.SyncServer(ctx, srv.Name)
				if err != nil {
					return fmt.Errorf("first sync failed: %w\n%s", err, retried(srv.Name))
				}
				printDiff(out, d)
				return nil
			}
			if noWait || wait <= 0 {
				fmt.Fprintln(out, "sync queued")
				return nil
			}
			deadline := time.Now().Add(wait)
			for time.Now().Before(deadline) {
				st, err := reg.Status(ctx, srv.Name)
				if err == nil && st.At.After(before.At) {
					if !st.OK {
						return fmt.Errorf("first sync failed (%s): %s\n%s", st.ErrorClass, st.Message, retried(srv.Name))
					}
					printSynced(out, st)
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
			return fmt.Errorf("no sync replica answered within %s: is toolbus serve (or a worker) running? The sync stays queued and %s stays registered; run it here with: toolbus sync %s (or pass --no-wait to not wait)", wait, srv.Name, srv.Name)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&transport, "transport", "", "stdio, sse or http (streamable HTTP); default: stdio with --command, else http")
	fs.StringVar(&srv.Command, "command", "", "stdio: the command to run")
	fs.StringArrayVar(&argv, "arg", nil, "stdio: an argument (repeat for more)")
	fs.Var(envs, "env", "stdio: NAME=value for the process (repeat; secret names are encrypted; value env:NAME refers to this host's env)")
	fs.StringVar(&srv.Dir, "dir", "", "stdio: working directory")
	fs.StringVar(&srv.URL, "url", "", "sse/http: the server's URL")
	fs.Var(hdrs, "header", "sse/http: Name=value sent on every request (repeat)")
	fs.StringVar(&srv.AuthHeader, "auth-header", "", `header carrying --auth-token (default "Authorization: Bearer <token>")`)
	fs.StringVar(&srv.AuthToken, "auth-token", "", "sse/http: token (stored encrypted), or env:NAME")
	fs.StringVar(&srv.ProtocolVersion, "protocol-version", "", "pin the MCP protocol version (default: negotiate)")
	fs.DurationVar(&connectTimeout, "connect-timeout", 0, "connect plus handshake bound (default 15s)")
	fs.DurationVar(&callTimeout, "call-timeout", 0, "bound of a call without a deadline (default 60s)")
	fs.IntVar(&srv.MaxConcurrency, "max-concurrency", 0, "in-flight calls per worker (default 64)")
	fs.BoolVar(&srv.RetryUnsafe, "retry-unsafe", false, "re-run destructive, non-idempotent tools after a worker crash")
	fs.BoolVar(&local, "local", false, "sync in this process instead of asking the running sync replicas")
	fs.DurationVar(&wait, "wait", 20*time.Second, "how long to wait for the first sync's outcome (0: as --no-wait)")
	fs.BoolVar(&noWait, "no-wait", false, "exit 0 once registered, without waiting for the first sync (it runs in the background)")
	return cmd
}

// retried says what becomes of a server whose first sync failed.
func retried(name string) string {
	return fmt.Sprintf("%s stays registered and will be retried at the next resync; fix it and run: toolbus sync %s", name, name)
}

// merge copies the explicitly set flag values of f over j.
func merge(j *registry.Server, f registry.Server, set func(flag string) bool) {
	setIf(set("command"), &j.Command, f.Command)
	setIf(set("dir"), &j.Dir, f.Dir)
	setIf(set("url"), &j.URL, f.URL)
	setIf(set("auth-header"), &j.AuthHeader, f.AuthHeader)
	setIf(set("auth-token"), &j.AuthToken, f.AuthToken)
	setIf(set("protocol-version"), &j.ProtocolVersion, f.ProtocolVersion)
	setIf(set("max-concurrency"), &j.MaxConcurrency, f.MaxConcurrency)
	setIf(set("retry-unsafe"), &j.RetryUnsafe, f.RetryUnsafe)
}

func setIf[T any](ok bool, dst *T, v T) {
	if ok {
		*dst = v
	}
}

func newServersListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "list the registered servers with their last sync (secrets redacted)",
		Example: `  toolbus servers list
  toolbus servers list --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			reg, err := a.openRegistry(cmd, "toolbus servers list")
			if err != nil {
				return err
			}
			defer reg.Close()
			srvs, err := reg.List(ctx)
			if err != nil {
				return err
			}
			type row struct {
				Server registry.Server     `json:"server"`
				Status subjects.SyncStatus `json:"status"`
			}
			rows := make([]row, 0, len(srvs))
			for _, s := range srvs {
				st, _ := reg.Status(ctx, s.Name)
				rows = append(rows, row{Server: registry.Redact(s), Status: st})
			}
			if asJSON {
				return printJSON(out, rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(out, "no servers registered (toolbus servers add, or list them in toolbus.yaml)")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVER\tTRANSPORT\tTARGET\tTOOLS\tSYNC\tLAST SYNC")
			for _, r := range rows {
				target := r.Server.URL
				if r.Server.Transport == registry.TransportStdio {
					target = strings.TrimSpace(r.Server.Command + " " + strings.Join(r.Server.Args, " "))
				}
				if len(target) > 50 {
					target = target[:49] + "…"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Server.Name, r.Server.Transport, target, r.Status.Tools, syncState(r.Status), ago(r.Status.At))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (secrets redacted)")
	return cmd
}

func syncState(st subjects.SyncStatus) string {
	switch {
	case st.OK:
		return "ok"
	case st.ErrorClass != "":
		return string(st.ErrorClass)
	}
	return "pending"
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func newServersShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "show <name>",
		Aliases: []string{"get"},
		Short:   "print a server's definition (secrets redacted) and sync status as JSON",
		Example: `  toolbus servers show demo`,
		Args:    wantArgs(1, 1, "one server name"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			ctx := cmd.Context()
			reg, err := a.openRegistry(cmd, "toolbus servers show")
			if err != nil {
				return err
			}
			defer reg.Close()
			srv, err := reg.Get(ctx, pos[0])
			if err != nil {
				return err
			}
			st, _ := reg.Status(ctx, srv.Name)
			return printJSON(cmd.OutOrStdout(), struct {
				Server registry.Server     `json:"server"`
				Status subjects.SyncStatus `json:"status"`
			}{registry.Redact(srv), st})
		},
	}
}

func newServersRmCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "rm <name>",
		Aliases: []string{"remove", "delete"},
		Short:   "remove a server and its tools; every worker closes its sessions",
		Example: `  toolbus servers rm search`,
		Args:    wantArgs(1, 1, "one server name"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			reg, err := a.openRegistry(cmd, "toolbus servers rm")
			if err != nil {
				return err
			}
			defer reg.Close()
			name := pos[0]
			if err := reg.Delete(cmd.Context(), name); err != nil {
				if errors.Is(err, registry.ErrNotFound) {
					return fmt.Errorf("no server %q is registered (toolbus servers list)", name)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s and its tools\n", name)
			return nil
		},
	}
}

// printJSON writes v to w as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printSynced prints a successful sync status.
func printSynced(w io.Writer, st subjects.SyncStatus) {
	fmt.Fprintf(w, "synced %s: %d tools (%.0f ms)\n", st.Server, st.Tools, st.DurationMS)
	if st.Message != "" {
		fmt.Fprintln(w, "  "+st.Message)
	}
}

func printDiff(w io.Writer, d catalogsync.Diff) {
	if d.Empty() {
		fmt.Fprintf(w, "%s: no changes (%d tools)\n", d.Server, d.Unchanged)
	} else {
		fmt.Fprintf(w, "%s: %d added, %d updated, %d removed, %d unchanged\n", d.Server, len(d.Added), len(d.Updated), len(d.Removed), d.Unchanged)
	}
	line := func(sign string, names []string) {
		sorted := append([]string(nil), names...)
		sort.Strings(sorted)
		for _, n := range sorted {
			fmt.Fprintf(w, "  %s %s\n", sign, n)
		}
	}
	line("+", d.Added)
	line("~", d.Updated)
	line("-", d.Removed)
	for _, n := range d.Held {
		fmt.Fprintf(w, "  held until approved: %s (toolbus tools approve %s %s)\n", n, d.Server, n)
	}
	for _, n := range d.Skipped {
		fmt.Fprintf(w, "  skipped: %s\n", n)
	}
}
