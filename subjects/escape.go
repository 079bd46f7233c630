package subjects

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest server, tool, agent or hook name, in characters,
// that fits in a subject token.
const MaxNameLen = 128

// escapeByte marks an escaped byte: '=' followed by two upper-case hex digits.
// '=' is legal in a NATS token and in a KV key, and rare in names, so common names stay readable:
// "get_weather" stays as it is, "fs.read" becomes "fs=2Eread".
const escapeByte = '='

const hexDigits = "0123456789ABCDEF"

// plain reports whether b stands for itself in an escaped token. Everything
// else — '.', '*', '>', spaces, control bytes, non-ASCII and '=' itself — is
// escaped byte by byte, so the token holds only [A-Za-z0-9_=-], valid in subjects and KV keys alike.
func plain(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}

// EscapeToken turns a name (a server, tool, agent or hook name) into one valid
// NATS subject token. It fails on an empty name, on a name that is not UTF-8,
// and on one longer than MaxNameLen characters. UnescapeToken reverses it.
func EscapeToken(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: name is empty", ErrInvalidName)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidName, name)
	}
	if n := utf8.RuneCountInString(name); n > MaxNameLen {
		return "", fmt.Errorf("%w: %d characters, at most %d allowed", ErrInvalidName, n, MaxNameLen)
	}
	clean := true
	for i := 0; i < len(name); i++ {
		if !plain(name[i]) {
			clean = false
			break
		}
	}
	if clean {
		return name, nil
	}
	var b strings.Builder
	b.Grow(len(name) + 8)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(escapeByte)
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
	return b.String(), nil
}

// UnescapeToken reverses EscapeToken. It fails on a token that EscapeToken
// could not have produced.
func UnescapeToken(tok string) (string, error) {
	if tok == "" {
		return "", fmt.Errorf("%w: empty token", ErrInvalidSubject)
	}
	if strings.IndexByte(tok, escapeByte) < 0 {
		for i := 0; i < len(tok); i++ {
			if !plain(tok[i]) {
				return "", fmt.Errorf("%w: token %q holds %q unescaped", ErrInvalidSubject, tok, tok[i])
			}
		}
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case plain(c):
			out = append(out, c)
		case c == escapeByte && i+2 < len(tok):
			hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("%w: bad escape in token %q", ErrInvalidSubject, tok)
			}
			d := byte(hi<<4 | lo)
			if plain(d) {
				return "", fmt.Errorf("%w: needless escape in token %q", ErrInvalidSubject, tok)
			}
			out = append(out, d)
			i += 2
		default:
			return "", fmt.Errorf("%w: bad byte %q in token %q", ErrInvalidSubject, c, tok)
		}
	}
	if !utf8.Valid(out) {
		return "", fmt.Errorf("%w: token %q does not decode to UTF-8", ErrInvalidSubject, tok)
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// ValidToken reports whether tok is usable as one literal NATS subject token:
// non-empty, no '.', no wildcards, no whitespace or control bytes.
func ValidToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; {
		case c == '.' || c == '*' || c == '>' || c <= ' ' || c == 0x7f:
			return false
		}
	}
	return true
}
