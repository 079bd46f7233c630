package registry

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"unicode"
)

// SecretKeyEnv names the environment variable holding the key that encrypts
// secrets in the servers bucket: 32 bytes, base64 (standard or URL
// encoding). Create one with `openssl rand -base64 32`.
const SecretKeyEnv = "TOOLBUS_SECRET_KEY"

// Secret values in a stored Server take one of two forms:
//
//	env:NAME   a reference, read from the environment of the process that
//	           dials (sync replicas and workers) right before dialing
//	enc:...    AES-256-GCM ciphertext under TOOLBUS_SECRET_KEY, bound to
//	           the server name and field
//
// either as a whole value or in place of the secret part of one (a URL's
// password, a flag's value; see secretFields). A plain secret is encrypted
// by Registry.Put when a key is configured and refused otherwise.
const (
	envPrefix = "env:"
	encPrefix = "enc:"
)

// sensitiveWords mark names that hold secrets wherever they appear in the
// name, compared case-insensitively with everything but letters and digits
// removed: GITHUB_TOKEN, X-Api-Key, DB_PASSWORD, --client-secret.
var sensitiveWords = []string{
	"authorization", "token", "secret", "password", "passwd", "passphrase", "apikey",
	"accesskey", "privatekey", "credential", "cookie", "session", "auth", "signature",
}

// sensitiveWholeWords mark names that hold secrets only as a whole word of
// the name (split at punctuation and camelCase): too short to look for
// inside words ("monkey", "design", "bypass").
var sensitiveWholeWords = []string{"key", "sig", "pass", "pwd"}

// IsSensitiveName reports whether a name says its value is a secret. It is
// the one rule for every name toolbus looks at: header and environment
// variable names (Authorization, X-Api-Key, GITHUB_TOKEN, DB_PASS), URL
// query parameters (api_key, access_token, sig) and command-line flags
// (--api-key, --token, -password).
func IsSensitiveName(name string) bool {
	joined := strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return unicode.ToLower(r)
		}
		return -1
	}, name)
	for _, w := range sensitiveWords {
		if strings.Contains(joined, w) {
			return true
		}
	}
	for _, w := range nameWords(name) {
		if slices.Contains(sensitiveWholeWords, w) {
			return true
		}
	}
	return false
}

// nameWords splits a name into lower-case words at anything but letters and
// digits and at camelCase: "X-APIKey" → x, api, key; "dbPass" → db, pass.
func nameWords(name string) []string {
	var words []string
	rs := []rune(name)
	w := 0 // start of the current word
	for i := 0; i <= len(rs); i++ {
		split := i == len(rs) || !(unicode.IsLetter(rs[i]) || unicode.IsDigit(rs[i]))
		upperAfterLower := i > w && i < len(rs) && unicode.IsUpper(rs[i]) &&
			(unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1])))
		if !split && !upperAfterLower {
			continue
		}
		if i > w {
			words = append(words, strings.ToLower(string(rs[w:i])))
		}
		w = i
		if split {
			w = i + 1
		}
	}
	return words
}

// parseSecretKey decodes a base64 32-byte key.
func parseSecretKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != 32 {
				return nil, fmt.Errorf("%w: %s decodes to %d bytes, want 32 (create one with `openssl rand -base64 32`)", ErrSecretKey, SecretKeyEnv, len(k))
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: %s is not base64 (create one with `openssl rand -base64 32`)", ErrSecretKey, SecretKeyEnv)
}

type sealer struct {
	aead cipher.AEAD // nil: no key configured
}

func newSealer(key []byte) (*sealer, error) {
	if key == nil {
		return &sealer{}, nil
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSecretKey, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func aad(server, field string) []byte { return []byte("toolbus/v1|" + server + "|" + field) }

func (s *sealer) seal(server, field, plain string) (string, error) {
	if s.aead == nil {
		return "", fmt.Errorf("%w: server %q: %s holds a plain secret and %s is not set; set %s (32 bytes, base64: `openssl rand -base64 32`) to store it encrypted, or give a reference like env:MY_TOKEN that is read from the environment when dialing",
			ErrSecretKey, server, field, SecretKeyEnv, SecretKeyEnv)
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := s.aead.Seal(nonce, nonce, []byte(plain), aad(server, field))
	return encPrefix + base64.RawURLEncoding.EncodeToString(ct), nil
}

func (s *sealer) open(server, field, v string) (string, error) {
	if s.aead == nil {
		return "", fmt.Errorf("%w: server %q: %s is encrypted and %s is not set in this process", ErrSecretKey, server, field, SecretKeyEnv)
	}
	ct, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(v, encPrefix))
	if err != nil || len(ct) < s.aead.NonceSize() {
		return "", fmt.Errorf("%w: server %q: %s is not valid ciphertext", ErrSecretKey, server, field)
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, ct[:n], ct[n:], aad(server, field))
	if err != nil {
		return "", fmt.Errorf("%w: server %q: %s does not decrypt with this %s (was it encrypted under another key?)", ErrSecretKey, server, field, SecretKeyEnv)
	}
	return string(pt), nil
}

// Where a secret sits in its value: all of it, or a part of a URL.
const (
	wholeValue  = iota
	urlPassword // scheme://user:PASSWORD@host
	urlQuery    // ?api_key=VALUE
)

// secret is one secret of a server, as secretFields finds it.
type secret struct {
	// field names it in messages, and binds its ciphertext to its place:
	// "auth_token", "headers.X-Api-Key", "env.DATABASE_URL.password",
	// "url.query.api_key", "args[3]".
	field string
	// in is where it sits in its value (wholeValue, urlPassword, urlQuery),
	// which says how a value from the environment is escaped there.
	in int
}

// visitor gets a secret and its stored value and returns the new value.
type visitor func(s secret, v string) (string, error)

// secretFields is the one place that decides what in a server is secret; it
// calls f with each and puts back what f returns. Sealing, resolving,
// redacting and HasCredentials all go through it. The secrets are:
//
//   - auth_token;
//   - a header or env value under a sensitive name (IsSensitiveName), or
//     one that already is a reference (env:) or ciphertext (enc:);
//   - in url, and in any other header or env value or argument that is a
//     URL (DATABASE_URL=postgres://u:p@h/db, whatever the variable is
//     called): the password and the values of query parameters under
//     sensitive names (api_key, token, sig, ...). The rest of the URL stays
//     readable;
//   - in args, the value of a flag under a sensitive name: the part after
//     "=" in --api-key=VALUE, or the next argument after --token, unless
//     that one starts with "-". Sealed, the argument list keeps its shape:
//     ["--api-key=enc:...", "--token", "enc:..."].
//
// A secret inside a URL is kept as written, percent-encoding and all.
func secretFields(srv *Server, f visitor) error {
	if srv.AuthToken != "" {
		v, err := f(secret{field: "auth_token"}, srv.AuthToken)
		if err != nil {
			return err
		}
		srv.AuthToken = v
	}
	var err error
	if srv.URL, err = secretURL("url", srv.URL, f); err != nil {
		return err
	}
	if srv.Headers, err = secretMap(srv.Headers, "headers", f); err != nil {
		return err
	}
	if srv.Env, err = secretMap(srv.Env, "env", f); err != nil {
		return err
	}
	srv.Args, err = secretArgs(srv.Args, f)
	return err
}

// isSealed reports whether v is a reference or ciphertext.
func isSealed(v string) bool {
	return strings.HasPrefix(v, envPrefix) || strings.HasPrefix(v, encPrefix)
}

func secretMap(m map[string]string, kind string, f visitor) (map[string]string, error) {
	if len(m) == 0 {
		return m, nil
	}
	out := maps.Clone(m)
	for _, k := range slices.Sorted(maps.Keys(m)) { // the first error is always the same
		v := m[k]
		field := kind + "." + k
		var nv string
		var err error
		if IsSensitiveName(k) || isSealed(v) {
			nv, err = f(secret{field: field}, v)
		} else {
			nv, err = secretURL(field, v, f)
		}
		if err != nil {
			return nil, err
		}
		out[k] = nv
	}
	return out, nil
}

// secretArgs visits the secrets in a stdio server's arguments. It returns
// args itself when nothing changed.
func secretArgs(args []string, f visitor) ([]string, error) {
	var out []string // a copy, made at the first change
	set := func(i int, v string) {
		if v == args[i] {
			return
		}
		if out == nil {
			out = slices.Clone(args)
		}
		out[i] = v
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		field := fmt.Sprintf("args[%d]", i)
		name, value, hasValue := flagParts(a)
		var nv string
		var err error
		switch {
		case IsSensitiveName(name) && hasValue && value != "": // --api-key=VALUE
			nv, err = f(secret{field: field}, value)
			nv = a[:len(a)-len(value)] + nv
		case IsSensitiveName(name) && !hasValue: // --token VALUE
			if i+1 < len(args) && args[i+1] != "" && !strings.HasPrefix(args[i+1], "-") {
				i++
				nv, err = f(secret{field: fmt.Sprintf("args[%d]", i)}, args[i])
				if err != nil {
					return nil, err
				}
				set(i, nv)
			}
			continue
		case hasValue: // --db=postgres://u:p@h/db
			nv, err = secretURL(field, value, f)
			nv = a[:len(a)-len(value)] + nv
		default: // a URL as it is
			nv, err = secretURL(field, a, f)
		}
		if err != nil {
			return nil, err
		}
		set(i, nv)
	}
	if out == nil {
		return args, nil
	}
	return out, nil
}

// flagParts splits "--name=value" or "-name=value" into name and value;
// "--name" gives the name alone, and anything else no name.
func flagParts(a string) (name, value string, hasValue bool) {
	rest, ok := strings.CutPrefix(a, "-")
	if !ok {
		return "", "", false
	}
	rest = strings.TrimPrefix(rest, "-")
	name, value, hasValue = strings.Cut(rest, "=")
	if name == "" || strings.HasPrefix(name, "-") {
		return "", "", false
	}
	return name, value, hasValue
}

// urlSecret is the place of a secret within a URL: v[start:end].
type urlSecret struct {
	start, end int
	in         int    // urlPassword or urlQuery
	name       string // "password" or "query.<parameter>"
}

// urlSecrets finds the password and the values of sensitive query
// parameters in v when v is a URL (scheme://...), by position, so that
// whatever is written there (even invalid escapes) is kept as it is.
func urlSecrets(v string) []urlSecret {
	i := strings.Index(v, "://")
	if i <= 0 || strings.ContainsAny(v[:i], " \t/?#@") {
		return nil
	}
	var out []urlSecret
	auth := i + 3
	end := len(v)
	if j := strings.IndexAny(v[auth:], "/?#"); j >= 0 {
		end = auth + j
	}
	if at := strings.LastIndexByte(v[auth:end], '@'); at >= 0 {
		userinfo := v[auth : auth+at]
		if c := strings.IndexByte(userinfo, ':'); c >= 0 && c+1 < len(userinfo) {
			out = append(out, urlSecret{start: auth + c + 1, end: auth + at, in: urlPassword, name: "password"})
		}
	}
	q := strings.IndexByte(v[auth:], '?')
	if q < 0 {
		return out
	}
	q += auth + 1
	qend := len(v)
	if h := strings.IndexByte(v[q:], '#'); h >= 0 {
		qend = q + h
	}
	for pos := q; pos < qend; {
		pend := qend
		if a := strings.IndexByte(v[pos:qend], '&'); a >= 0 {
			pend = pos + a
		}
		k, val, ok := strings.Cut(v[pos:pend], "=")
		if key, err := url.QueryUnescape(k); err == nil && ok && val != "" && IsSensitiveName(key) {
			vstart := pos + len(k) + 1
			out = append(out, urlSecret{start: vstart, end: pend, in: urlQuery, name: "query." + key})
		}
		pos = pend + 1
	}
	return out
}

// secretURL visits the secrets of a URL in v (field names it) and splices
// back what f returns. Anything that is not a URL is returned as it is.
func secretURL(field, v string, f visitor) (string, error) {
	parts := urlSecrets(v)
	if len(parts) == 0 {
		return v, nil
	}
	var b strings.Builder
	prev := 0
	for _, p := range parts {
		nv, err := f(secret{field: field + "." + p.name, in: p.in}, v[p.start:p.end])
		if err != nil {
			return "", err
		}
		b.WriteString(v[prev:p.start])
		b.WriteString(nv)
		prev = p.end
	}
	b.WriteString(v[prev:])
	return b.String(), nil
}

// escapeIn escapes a value read from the environment for its place in a
// URL; a whole value is returned as it is.
func escapeIn(in int, v string) string {
	switch in {
	case urlPassword:
		return strings.TrimPrefix(url.UserPassword("", v).String(), ":")
	case urlQuery:
		return url.QueryEscape(v)
	}
	return v
}

// HasCredentials reports whether srv carries any secret (token, secret
// header or env entry, a password or key in a URL, a secret argument): a
// server that answers an empty tool list then has most likely rejected the
// credentials.
func HasCredentials(srv Server) bool {
	has := false
	_ = secretFields(&srv, func(_ secret, v string) (string, error) {
		has = has || v != ""
		return v, nil
	})
	return has
}

// scrubbed is an error whose text has a server's secrets replaced by
// <redacted>: mcp-go's and net/http's messages quote URLs with their query,
// and a child's stderr may echo what it was given.
type scrubbed struct {
	err     error
	secrets []string
}

func (e *scrubbed) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "<redacted>")
	}
	return msg
}

func (e *scrubbed) Unwrap() error { return e.err }

// minScrub is the shortest secret scrubbed from messages: shorter ones
// would garble them more than they hide.
const minScrub = 4

// Scrubber returns a function that scrubs the secrets of resolved (a
// server as Resolve returns it) from an error's text, keeping the chain.
func Scrubber(resolved Server) func(error) error {
	var secrets []string
	_ = secretFields(&resolved, func(_ secret, v string) (string, error) {
		for _, s := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
			if len(s) >= minScrub && !slices.Contains(secrets, s) {
				secrets = append(secrets, s)
			}
		}
		return v, nil
	})
	// Longest first, so a secret that contains another goes whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	return func(err error) error {
		if err == nil || len(secrets) == 0 {
			return err
		}
		return &scrubbed{err: err, secrets: secrets}
	}
}
