package subjects

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// Subject prefixes and wildcards. Subjects are built only by the functions
// below, which escape every name into a single token.
const (
	ToolCallPrefix     = "tool.call."
	ToolResultPrefix   = "tool.result."
	ToolProgressPrefix = "tool.progress."
	ToolCancelPrefix   = "tool.cancel."
	ToolDeadPrefix     = "tool.dead."

	// ToolCallAll matches every call.
	ToolCallAll = "tool.call.>"
	// ToolResultAll matches every stored result.
	ToolResultAll = "tool.result.>"
	// ToolDeadAll matches every dead letter.
	ToolDeadAll = "tool.dead.>"
	// ToolCancelAll matches every cancellation request.
	ToolCancelAll = "tool.cancel.*"

	// CatalogResyncAll asks every sync replica's queue to re-list all servers.
	CatalogResyncAll = "catalog.resync"
	// CatalogResyncPrefix is followed by one escaped server name.
	CatalogResyncPrefix  = "catalog.resync."
	CatalogChangedPrefix = "catalog.changed."
	AgentWakePrefix      = "agent.wake."
	WebhookPrefix        = "events.webhook."
)

// ToolCall returns tool.call.<server>.<tool>.
func ToolCall(server, tool string) (string, error) { return withTwo(ToolCallPrefix, server, tool) }

// ParseToolCall returns the server and tool names of a tool.call subject.
func ParseToolCall(subject string) (server, tool string, err error) {
	return parseTwo(subject, ToolCallPrefix)
}

// ToolDead returns tool.dead.<server>.<tool>.
func ToolDead(server, tool string) (string, error) { return withTwo(ToolDeadPrefix, server, tool) }

// ToolCallServerAll returns tool.call.<server>.> — every call to one server.
func ToolCallServerAll(server string) (string, error) {
	s, err := EscapeToken(server)
	if err != nil {
		return "", fmt.Errorf("server name: %w", err)
	}
	return ToolCallPrefix + s + ".>", nil
}

// withTwo returns prefix + <server>.<tool>, both names escaped; parseTwo
// reverses it.
func withTwo(prefix, server, tool string) (string, error) {
	s, err := EscapeToken(server)
	if err != nil {
		return "", fmt.Errorf("server name: %w", err)
	}
	t, err := EscapeToken(tool)
	if err != nil {
		return "", fmt.Errorf("tool name: %w", err)
	}
	return prefix + s + "." + t, nil
}

func parseTwo(subject, prefix string) (string, string, error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return "", "", fmt.Errorf("%w: %q does not start with %q", ErrInvalidSubject, subject, prefix)
	}
	st, tt, ok := strings.Cut(rest, ".")
	if !ok || tt == "" {
		return "", "", fmt.Errorf("%w: %q has no tool name (want %s<server>.<tool>)", ErrInvalidSubject, subject, prefix)
	}
	if strings.IndexByte(tt, '.') >= 0 {
		return "", "", fmt.Errorf("%w: %q has more than two tokens after %q; escape dots in names", ErrInvalidSubject, subject, prefix)
	}
	server, err := UnescapeToken(st)
	if err != nil {
		return "", "", fmt.Errorf("server token: %w", err)
	}
	tool, err := UnescapeToken(tt)
	if err != nil {
		return "", "", fmt.Errorf("tool token: %w", err)
	}
	return server, tool, nil
}

// MaxCallIDLen is the longest call id accepted.
const MaxCallIDLen = 64

// ValidateCallID checks that id is 1–64 characters of [A-Za-z0-9_-], so it is
// one subject token as it is and can key a KV entry.
func ValidateCallID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty (set the %s header)", ErrInvalidCallID, HeaderCallID)
	}
	if len(id) > MaxCallIDLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidCallID, len(id), MaxCallIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !plain(id[i]) {
			return fmt.Errorf("%w: %q holds %q; use letters, digits, '_' and '-'", ErrInvalidCallID, id, id[i])
		}
	}
	return nil
}

// NewCallID returns a fresh, unguessable call id: 128 random bits,
// URL-safe base64 (22 characters).
func NewCallID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ToolResult returns tool.result.<call_id>. The id must have passed
// ValidateCallID.
func ToolResult(callID string) string { return ToolResultPrefix + callID }

// ToolProgress returns tool.progress.<call_id>.
func ToolProgress(callID string) string { return ToolProgressPrefix + callID }

// ToolCancel returns tool.cancel.<call_id>.
func ToolCancel(callID string) string { return ToolCancelPrefix + callID }

// CallIDFromSubject returns the last token of a tool.result, tool.progress
// or tool.cancel subject.
func CallIDFromSubject(subject string) (string, error) {
	i := strings.LastIndexByte(subject, '.')
	id := subject[i+1:]
	if err := ValidateCallID(id); err != nil {
		return "", err
	}
	return id, nil
}

// CatalogResync returns catalog.resync for server "" (all servers) or
// catalog.resync.<server>.
func CatalogResync(server string) (string, error) {
	if server == "" {
		return CatalogResyncAll, nil
	}
	return withName(CatalogResyncPrefix, server)
}

// ParseCatalogResync returns the server named by a catalog.resync subject, or
// "" for all servers.
func ParseCatalogResync(subject string) (string, error) {
	if subject == CatalogResyncAll {
		return "", nil
	}
	return parseOne(subject, CatalogResyncPrefix)
}

// CatalogChanged returns catalog.changed.<server>.
func CatalogChanged(server string) (string, error) { return withName(CatalogChangedPrefix, server) }

// AgentWake returns agent.wake.<agent>.
func AgentWake(agent string) (string, error) { return withName(AgentWakePrefix, agent) }

// Webhook returns events.webhook.<hook>.
func Webhook(hook string) (string, error) { return withName(WebhookPrefix, hook) }

func withName(prefix, name string) (string, error) {
	tok, err := EscapeToken(name)
	if err != nil {
		return "", err
	}
	return prefix + tok, nil
}

func parseOne(subject, prefix string) (string, error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok || strings.IndexByte(rest, '.') >= 0 {
		return "", fmt.Errorf("%w: %q is not %s<name>", ErrInvalidSubject, subject, prefix)
	}
	return UnescapeToken(rest)
}

// ValidPublishSubject reports whether s is a literal subject one may publish
// to: dot-separated valid tokens, no wildcards.
func ValidPublishSubject(s string) bool {
	if s == "" {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if !ValidToken(tok) {
			return false
		}
	}
	return true
}
