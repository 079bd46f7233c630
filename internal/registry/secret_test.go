package sync

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/toolbus-dev/toolbus/subjects"
)

func TestIsSensitiveName(t *testing.T) {
	t.Parallel()
	secret := []string{
		// headers
		"Authorization", "X-Api-Key", "x-api-key", "X-APIKey", "Api-Key", "X-Auth-Token", "Cookie",
		"Ocp-Apim-Subscription-Key", "X-Goog-Api-Key", "X-Signature", "X-Hub-Signature-256", "Proxy-Authorization",
		// environment
		"GITHUB_TOKEN", "OPENAI_API_KEY", "DB_PASSWORD", "DB_PASS", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "STRIPE_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "SSH_PASSPHRASE", "MYSQL_PWD",
		// query parameters
		"api_key", "apikey", "apiKey", "token", "key", "access_token", "secret", "password", "sig", "signature",
		"client_secret", "auth",
		// flags (without their dashes)
		"api-key", "token", "password", "pass", "client-secret", "accessToken", "privateKey",
	}
	plain := []string{
		"LANG", "X-Client", "Content-Type", "PATH", "HOME", "TERM", "NODE_ENV", "LOG_LEVEL", "region",
		"monkey", "KEYMAP", "keyboard", "design", "bypass", "compass", "sslmode", "verbose", "transport",
		"port", "user", "username", "DATABASE_URL", "base-url", "",
	}
	for _, n := range secret {
		if !IsSensitiveName(n) {
			t.Errorf("IsSensitiveName(%q) = false, want true", n)
		}
	}
	for _, n := range plain {
		if IsSensitiveName(n) {
			t.Errorf("IsSensitiveName(%q) = true, want false", n)
		}
	}
}

// found lists the secrets secretFields visits, as field=value.
func found(srv subjects.Server) []string {
	var out []string
	_ = secretFields(&srv, func(s secret, v string) (string, error) {
		out = append(out, s.field+"="+v)
		return v, nil
	})
	slices.Sort(out)
	return out
}

func TestSecretFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		srv  subjects.Server
		want []string
	}{
		{"auth token and secret headers",
			subjects.Server{AuthToken: "t0k", Headers: map[string]string{"X-Api-Key": "k1", "X-Client": "toolbus", "X-Trace": "env:TRACE"}},
			[]string{"auth_token=t0k", "headers.X-Api-Key=k1", "headers.X-Trace=env:TRACE"}},
		{"password in the url",
			subjects.Server{URL: "https://bob:hunter2@mcp.example.com/mcp"},
			[]string{"url.password=hunter2"}},
		{"a user alone is no secret",
			subjects.Server{URL: "https://bob@mcp.example.com/mcp"},
			nil},
		{"query parameters under secret names",
			subjects.Server{URL: "https://mcp.example.com/mcp?region=eu&api_key=k2&apikey=k3&token=k4&key=k5&access_token=k6&secret=k7&password=k8&sig=k9&signature=k10&empty_token=#frag"},
			[]string{"url.query.access_token=k6", "url.query.api_key=k2", "url.query.apikey=k3", "url.query.key=k5",
				"url.query.password=k8", "url.query.secret=k7", "url.query.sig=k9", "url.query.signature=k10", "url.query.token=k4"}},
		{"escapes kept as written",
			subjects.Server{URL: "https://u:p%40ss@h/mcp?api%5Fkey=a%2Fb"},
			[]string{"url.password=p%40ss", "url.query.api_key=a%2Fb"}},
		{"env: a URL with credentials, whatever the name",
			subjects.Server{Env: map[string]string{
				"DATABASE_URL": "postgres://u:pw@db:5432/app?sslmode=disable",
				"MONGO":        "mongodb://u:pw2@h1:27017,h2:27017/db",
				"JDBC":         "jdbc:postgresql://u:pw3@h/db",
				"REDIS":        "redis://:pw4@cache:6379/0",
				"SITE":         "https://example.com/?q=1",
				"LANG":         "C",
			}},
			[]string{"env.DATABASE_URL.password=pw", "env.JDBC.password=pw3", "env.MONGO.password=pw2", "env.REDIS.password=pw4"}},
		{"env: secret names win over URLs",
			subjects.Server{Env: map[string]string{"DB_PASSWORD_URL": "postgres://u:pw@h/db"}},
			[]string{"env.DB_PASSWORD_URL=postgres://u:pw@h/db"}},
		{"args: --flag=value and --flag value",
			subjects.Server{Args: []string{"-y", "some-server", "--api-key=xyz", "--token", "abc", "--password=", "--verbose", "--client-secret", "--next", "-token=t1"}},
			[]string{"args[2]=xyz", "args[4]=abc", "args[9]=t1"}},
		{"args: a secret flag as the last argument",
			subjects.Server{Args: []string{"--token"}},
			nil},
		{"args: URLs with credentials, alone or as a flag's value",
			subjects.Server{Args: []string{"postgresql://u:pw@localhost/mydb", "--db=mysql://root:pw2@h/x", "--endpoint", "https://h/mcp?key=k"}},
			[]string{"args[0].password=pw", "args[1].password=pw2", "args[3].query.key=k"}},
		{"args: plain ones untouched",
			subjects.Server{Args: []string{"demo", "--transport", "stdio", "/home/u/notes", "env:NOT_A_REF"}},
			nil},
	}
	for _, tc := range cases {
		if got := found(tc.srv); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestSecretsSealedResolvedRedacted seals every kind of secret, checks the
// sealed form shows none and keeps its shape, that the same secrets are
// found again in it, and that Resolve gives back the original.
func TestSecretsSealedResolvedRedacted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, WithoutResyncOnPut())
	h.env.set("PGPASS", "p@ss w/rd")
	h.env.set("QKEY", "a&b=c")
	srv := subjects.Server{
		Name: "all", Transport: subjects.TransportHTTP,
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
	noKey, err := NewRegistry(ctx(t), h.ns.JS, WithGetenv(func(string) string { return "" }), WithoutResyncOnPut())
	if err != nil {
		t.Fatal(err)
	}
	stdio := func(args []string, env map[string]string) subjects.Server {
		return subjects.Server{Name: "s", Transport: subjects.TransportStdio, Command: "x", Args: args, Env: env}
	}
	web := func(u string) subjects.Server {
		return subjects.Server{Name: "w", Transport: subjects.TransportHTTP, URL: u}
	}
	cases := []struct {
		srv   subjects.Server
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
	ok := []subjects.Server{
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

func TestScrubber(t *testing.T) {
	t.Parallel()
	res := subjects.Server{
		URL:  "https://h/mcp?api_key=k%2Fey-123",
		Args: []string{"--token", "abc"},
		Env:  map[string]string{"DATABASE_URL": "postgres://u:pw-secret@h/db"},
	}
	base := errors.New(`Post "https://h/mcp?api_key=k%2Fey-123": boom; stderr: connecting to postgres://u:pw-secret@h/db; abc`)
	err := scrubber(res)(base)
	want := `Post "https://h/mcp?api_key=<redacted>": boom; stderr: connecting to postgres://u:<redacted>@h/db; abc`
	if err.Error() != want {
		t.Errorf("scrubbed:\n got %s\nwant %s", err, want)
	}
	if !errors.Is(err, base) {
		t.Error("scrubbing lost the error chain")
	}
	if scrubber(res)(nil) != nil {
		t.Error("scrubbing nil is not nil")
	}
}

// FuzzSecretRoundTrip: sealing whatever a URL, an env value or the args
// hold, then opening it, gives back the input, and the sealed form has its
// secrets in the same places.
func FuzzSecretRoundTrip(f *testing.F) {
	f.Add("https://u:p@h/mcp?api_key=k&x=1#f", "postgres://u:pw@h1,h2/db", "--token", "abc")
	f.Add("http://h/?token=&token=a&&=b&sig", "redis://:@h", "--api-key=", "-")
	f.Add("x://a:b:c@d@e/f?g=h", "", "-pass", "--pass=x=y")
	s, err := newSealer(testKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, u, envVal, a0, a1 string) {
		srv := subjects.Server{URL: u, Env: map[string]string{"V": envVal}, Args: []string{a0, a1, "tail"}}
		sealed := srv
		err := secretFields(&sealed, func(sc secret, v string) (string, error) {
			if isSealed(v) || v == "" {
				return v, nil
			}
			return s.seal("fuzz", sc.field, v)
		})
		if err != nil {
			t.Fatal(err)
		}
		var before, after []string
		for _, x := range found(srv) {
			before = append(before, strings.SplitN(x, "=", 2)[0])
		}
		for _, x := range found(sealed) {
			after = append(after, strings.SplitN(x, "=", 2)[0])
		}
		if !slices.Equal(before, after) {
			t.Fatalf("secrets moved: %q → %q (%+v)", before, after, sealed)
		}
		opened := sealed
		if err := secretFields(&opened, func(sc secret, v string) (string, error) {
			if !strings.HasPrefix(v, encPrefix) {
				return v, nil
			}
			if pt, err := s.open("fuzz", sc.field, v); err == nil {
				return pt, nil
			}
			return v, nil // a plain value that looked like ciphertext
		}); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(opened, srv) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", opened, srv)
		}
	})
}
