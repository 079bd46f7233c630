package registry

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/toolbus-dev/toolbus/internal/testutil"
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
func found(srv Server) []string {
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
		srv  Server
		want []string
	}{
		{"auth token and secret headers",
			Server{AuthToken: "t0k", Headers: map[string]string{"X-Api-Key": "k1", "X-Client": "toolbus", "X-Trace": "env:TRACE"}},
			[]string{"auth_token=t0k", "headers.X-Api-Key=k1", "headers.X-Trace=env:TRACE"}},
		{"password in the url",
			Server{URL: "https://bob:hunter2@mcp.example.com/mcp"},
			[]string{"url.password=hunter2"}},
		{"a user alone is no secret",
			Server{URL: "https://bob@mcp.example.com/mcp"},
			nil},
		{"query parameters under secret names",
			Server{URL: "https://mcp.example.com/mcp?region=eu&api_key=k2&apikey=k3&token=k4&key=k5&access_token=k6&secret=k7&password=k8&sig=k9&signature=k10&empty_token=#frag"},
			[]string{"url.query.access_token=k6", "url.query.api_key=k2", "url.query.apikey=k3", "url.query.key=k5",
				"url.query.password=k8", "url.query.secret=k7", "url.query.sig=k9", "url.query.signature=k10", "url.query.token=k4"}},
		{"escapes kept as written",
			Server{URL: "https://u:p%40ss@h/mcp?api%5Fkey=a%2Fb"},
			[]string{"url.password=p%40ss", "url.query.api_key=a%2Fb"}},
		{"env: a URL with credentials, whatever the name",
			Server{Env: map[string]string{
				"DATABASE_URL": "postgres://u:pw@db:5432/app?sslmode=disable",
				"MONGO":        "mongodb://u:pw2@h1:27017,h2:27017/db",
				"JDBC":         "jdbc:postgresql://u:pw3@h/db",
				"REDIS":        "redis://:pw4@cache:6379/0",
				"SITE":         "https://example.com/?q=1",
				"LANG":         "C",
			}},
			[]string{"env.DATABASE_URL.password=pw", "env.JDBC.password=pw3", "env.MONGO.password=pw2", "env.REDIS.password=pw4"}},
		{"env: secret names win over URLs",
			Server{Env: map[string]string{"DB_PASSWORD_URL": "postgres://u:pw@h/db"}},
			[]string{"env.DB_PASSWORD_URL=postgres://u:pw@h/db"}},
		{"args: --flag=value and --flag value",
			Server{Args: []string{"-y", "some-server", "--api-key=xyz", "--token", "abc", "--password=", "--verbose", "--client-secret", "--next", "-token=t1"}},
			[]string{"args[2]=xyz", "args[4]=abc", "args[9]=t1"}},
		{"args: a secret flag as the last argument",
			Server{Args: []string{"--token"}},
			nil},
		{"args: URLs with credentials, alone or as a flag's value",
			Server{Args: []string{"postgresql://u:pw@localhost/mydb", "--db=mysql://root:pw2@h/x", "--endpoint", "https://h/mcp?key=k"}},
			[]string{"args[0].password=pw", "args[1].password=pw2", "args[3].query.key=k"}},
		{"args: plain ones untouched",
			Server{Args: []string{"demo", "--transport", "stdio", "/home/u/notes", "env:NOT_A_REF"}},
			nil},
	}
	for _, tc := range cases {
		if got := found(tc.srv); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestScrubber(t *testing.T) {
	t.Parallel()
	res := Server{
		URL:  "https://h/mcp?api_key=k%2Fey-123",
		Args: []string{"--token", "abc"},
		Env:  map[string]string{"DATABASE_URL": "postgres://u:pw-secret@h/db"},
	}
	base := errors.New(`Post "https://h/mcp?api_key=k%2Fey-123": boom; stderr: connecting to postgres://u:pw-secret@h/db; abc`)
	err := Scrubber(res)(base)
	want := `Post "https://h/mcp?api_key=<redacted>": boom; stderr: connecting to postgres://u:<redacted>@h/db; abc`
	if err.Error() != want {
		t.Errorf("scrubbed:\n got %s\nwant %s", err, want)
	}
	if !errors.Is(err, base) {
		t.Error("scrubbing lost the error chain")
	}
	if Scrubber(res)(nil) != nil {
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
	s, err := newSealer(testutil.SecretKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, u, envVal, a0, a1 string) {
		srv := Server{URL: u, Env: map[string]string{"V": envVal}, Args: []string{a0, a1, "tail"}}
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
