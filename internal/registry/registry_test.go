package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

type harness struct {
	t   *testing.T
	ns  *natstest.Server
	reg *Registry
	env *testutil.Env
}

// newHarness starts a NATS server and a Registry on it that reads env:
// references from a fake environment and seals with testutil.SecretKey.
func newHarness(t *testing.T, opts ...Option) *harness {
	t.Helper()
	ns := natstest.Start(t)
	e := &testutil.Env{}
	reg, err := New(ctx(t), ns.JS, append([]Option{WithGetenv(e.Getenv), WithSecretKey(testutil.SecretKey)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, ns: ns, reg: reg, env: e}
}

func (h *harness) put(srv Server) {
	h.t.Helper()
	if err := h.reg.Put(ctx(h.t), srv); err != nil {
		h.t.Fatalf("put %s: %v", srv.Name, err)
	}
}

func ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSecretsSealedResolvedRedacted seals every kind of secret, checks the
// sealed form shows none and keeps its shape, that the same secrets are
// found again in it, and that Resolve gives back the original.
func TestSecretsSealedResolvedRedacted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, WithoutResyncOnPut())
	h.env.Set("PGPASS", "p@ss w/rd")
	h.env.Set("QKEY", "a&b=c")
	srv := Server{
		Name: "all", Transport: TransportHTTP,
		URL:       "https://bob:hunter2@mcp.example.com/mcp?region=eu&api_key=k-url&sig=env:QKEY",
		AuthToken: "tok-1",
		Headers:   map[string]string{"X-Api-Key": "k-hdr", "X-Client": "toolbus"},
		Env: map[string]string{
			"DATABASE_URL": "postgres://u:pw-db@db/app?sslmode=disable",
			"REPLICA_URL":  "postgres://u:env:PGPASS@replica/app",
			"LANG":         "C",
		},
		Args: []string{"--api-key=k-arg", "--token", "t-arg", "postgresql://u:pw-pos@h/db", "--verbose"},
	}
	h.put(srv)
	stored, err := h.reg.Get(ctx(t), "all")
	if err != nil {
		t.Fatal(err)
	}
	plain := []string{"hunter2", "k-url", "tok-1", "k-hdr", "pw-db", "k-arg", "t-arg", "pw-pos"}
	for _, p := range plain {
		if strings.Contains(fmt.Sprintf("%+v", stored), p) {
			t.Errorf("stored entry holds %q in the clear: %+v", p, stored)
		}
	}
	if err := stored.Validate(); err != nil {
		t.Errorf("the sealed entry does not validate: %v", err)
	}
	if !strings.HasPrefix(stored.URL, "https://bob:enc:") || !strings.Contains(stored.URL, "@mcp.example.com/mcp?region=eu&api_key=enc:") ||
		!strings.HasSuffix(stored.URL, "&sig=env:QKEY") {
		t.Errorf("sealed url = %q", stored.URL)
	}
	if len(stored.Args) != 5 || !strings.HasPrefix(stored.Args[0], "--api-key=enc:") || stored.Args[1] != "--token" ||
		!strings.HasPrefix(stored.Args[2], "enc:") || !strings.HasPrefix(stored.Args[3], "postgresql://u:enc:") || stored.Args[4] != "--verbose" {
		t.Errorf("sealed args = %q", stored.Args)
	}
	if stored.Env["LANG"] != "C" || stored.Env["REPLICA_URL"] != srv.Env["REPLICA_URL"] || stored.Headers["X-Client"] != "toolbus" {
		t.Errorf("non-secrets or references changed: %+v", stored)
	}
	var fieldsPlain, fieldsSealed []string
	for _, f := range found(srv) {
		fieldsPlain = append(fieldsPlain, strings.SplitN(f, "=", 2)[0])
	}
	for _, f := range found(stored) {
		fieldsSealed = append(fieldsSealed, strings.SplitN(f, "=", 2)[0])
	}
	if !slices.Equal(fieldsPlain, fieldsSealed) {
		t.Errorf("sealing moved secrets:\nplain  %q\nsealed %q", fieldsPlain, fieldsSealed)
	}

	res, err := h.reg.Resolve(stored)
	if err != nil {
		t.Fatal(err)
	}
	want := srv
	want.URL = "https://bob:hunter2@mcp.example.com/mcp?region=eu&api_key=k-url&sig=a%26b%3Dc"
	want.Env = map[string]string{
		"DATABASE_URL": srv.Env["DATABASE_URL"], "LANG": "C",
		"REPLICA_URL": "postgres://u:p%40ss%20w%2Frd@replica/app",
	}
	if fmt.Sprintf("%+v", res) != fmt.Sprintf("%+v", want) {
		t.Errorf("resolved:\n got %+v\nwant %+v", res, want)
	}

	red := Redact(stored)
	wantRed := []string{
		"url=https://bob:<encrypted>@mcp.example.com/mcp?region=eu&api_key=<encrypted>&sig=env:QKEY",
		"auth_token=<encrypted>", "X-Api-Key=<encrypted>", "X-Client=toolbus",
		"DATABASE_URL=postgres://u:<encrypted>@db/app?sslmode=disable",
		"REPLICA_URL=postgres://u:env:PGPASS@replica/app",
		`args=["--api-key=<encrypted>" "--token" "<encrypted>" "postgresql://u:<encrypted>@h/db" "--verbose"]`,
	}
	gotRed := []string{
		"url=" + red.URL, "auth_token=" + red.AuthToken, "X-Api-Key=" + red.Headers["X-Api-Key"], "X-Client=" + red.Headers["X-Client"],
		"DATABASE_URL=" + red.Env["DATABASE_URL"], "REPLICA_URL=" + red.Env["REPLICA_URL"], fmt.Sprintf("args=%q", red.Args),
	}
	if !slices.Equal(gotRed, wantRed) {
		t.Errorf("redacted:\n got %q\nwant %q", gotRed, wantRed)
	}
	// Plain secrets (an entry stored before they were detected) redact too.
	for _, p := range plain {
		if strings.Contains(fmt.Sprintf("%+v", Redact(srv)), p) {
			t.Errorf("Redact of the plain definition shows %q", p)
		}
	}
	// Redact does not touch its argument's maps and slices.
	if !strings.HasPrefix(stored.Args[0], "--api-key=enc:") || !strings.HasPrefix(stored.Headers["X-Api-Key"], "enc:") {
		t.Errorf("Redact changed the server it was given: %+v", stored)
	}
}

// TestPlainSecretRefusedWithoutKey: every kind of secret, given in the
// clear with no key, is refused with an error naming where it is.
func TestPlainSecretRefusedWithoutKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, WithoutResyncOnPut())
	noKey, err := New(ctx(t), h.ns.JS, WithGetenv(func(string) string { return "" }), WithoutResyncOnPut())
	if err != nil {
		t.Fatal(err)
	}
	stdio := func(args []string, env map[string]string) Server {
		return Server{Name: "s", Transport: TransportStdio, Command: "x", Args: args, Env: env}
	}
	web := func(u string) Server {
		return Server{Name: "w", Transport: TransportHTTP, URL: u}
	}
	cases := []struct {
		srv   Server
		field string
	}{
		{web("https://u:pw@h/mcp"), "url.password"},
		{web("https://h/mcp?api_key=k"), "url.query.api_key"},
		{stdio(nil, map[string]string{"DATABASE_URL": "postgres://u:pw@h/db"}), "env.DATABASE_URL.password"},
		{stdio([]string{"--api-key=xyz"}, nil), "args[0]"},
		{stdio([]string{"-v", "--token", "xyz"}, nil), "args[2]"},
		{stdio([]string{"postgresql://u:pw@h/db"}, nil), "args[0].password"},
	}
	for _, tc := range cases {
		err := noKey.Put(ctx(t), tc.srv)
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), tc.field+" holds a plain secret") || !strings.Contains(err.Error(), "env:") {
			t.Errorf("%+v: %v, want an ErrSecretKey naming %s", tc.srv, err, tc.field)
		}
	}
	// References need no key.
	ok := []Server{
		web("https://u:env:PW@h/mcp?api_key=env:KEY"),
		stdio([]string{"--api-key=env:KEY", "--token", "env:TOKEN", "postgresql://u:env:PW@h/db"}, map[string]string{"DATABASE_URL": "env:DATABASE_URL"}),
		stdio([]string{"--verbose", "/data", "https://example.com/?page=2"}, map[string]string{"SITE_URL": "https://example.com/"}),
	}
	for _, srv := range ok {
		if err := noKey.Put(ctx(t), srv); err != nil {
			t.Errorf("%+v: %v", srv, err)
		}
	}
}
