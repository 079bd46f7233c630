package sync

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"strings"

	"toolbus/subjects"
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
// A plain value in a secret field is encrypted by Registry.Put when a key is
// configured and refused otherwise.
const (
	envPrefix = "env:"
	encPrefix = "enc:"
)

// sensitiveWords mark header and environment variable names that hold
// secrets, compared case-insensitively with '-' and '_' removed.
var sensitiveWords = []string{
	"authorization", "token", "secret", "password", "passwd", "apikey",
	"accesskey", "privatekey", "credential", "cookie", "session", "auth",
}

// IsSensitiveName reports whether a header or environment variable name
// holds a secret (Authorization, X-Api-Key, GITHUB_TOKEN, DB_PASSWORD, ...).
func IsSensitiveName(name string) bool {
	n := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(name))
	for _, w := range sensitiveWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
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

// secretField visits every secret-bearing field of srv: AuthToken, headers
// and env entries under sensitive names. f returns the new value.
func secretFields(srv *subjects.Server, f func(field, v string) (string, error)) error {
	if srv.AuthToken != "" {
		v, err := f("auth_token", srv.AuthToken)
		if err != nil {
			return err
		}
		srv.AuthToken = v
	}
	var err error
	if srv.Headers, err = secretMap(srv.Headers, "headers", f); err != nil {
		return err
	}
	srv.Env, err = secretMap(srv.Env, "env", f)
	return err
}

func secretMap(m map[string]string, kind string, f func(field, v string) (string, error)) (map[string]string, error) {
	if len(m) == 0 {
		return m, nil
	}
	out := maps.Clone(m)
	for k, v := range m {
		if !IsSensitiveName(k) && !strings.HasPrefix(v, envPrefix) && !strings.HasPrefix(v, encPrefix) {
			continue
		}
		nv, err := f(kind+"."+k, v)
		if err != nil {
			return nil, err
		}
		out[k] = nv
	}
	return out, nil
}

// HasCredentials reports whether srv carries any secret (token, secret
// header or env entry): a server that answers an empty tool list then has
// most likely rejected the credentials.
func HasCredentials(srv subjects.Server) bool {
	has := false
	_ = secretFields(&srv, func(_, v string) (string, error) {
		has = has || v != ""
		return v, nil
	})
	return has
}
