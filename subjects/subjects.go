package subjects

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// Subject prefixes and wildcards. Subjects are built only by the functions
// below, which validate the agent and call id and escape every name into a
// single token.
//
// Every subject about a call carries its agent as the token after the
// prefix: tool.call.<agent>.<server>.<tool>, tool.result.<agent>.<call_id>,
// tool.reply.<agent>.<call_id>, tool.progress.<agent>.<call_id>,
// tool.cancel.<agent>.<call_id>. NATS
// permissions grant each agent its own token, so the agent a call runs as is
// fixed by who could publish it, and a worker trusts that token, never a
// header.
const (
	ToolCallPrefix     = "tool.call."
	ToolResultPrefix   = "tool.result."
	ToolReplyPrefix    = "tool.reply."
	ToolProgressPrefix = "tool.progress."
	ToolCancelPrefix   = "tool.cancel."
	ToolDeadPrefix     = "tool.dead."

	// ToolCallAll matches every call.
	ToolCallAll = "tool.call.>"
	// ToolResultAll matches every stored result.
	ToolResultAll = "tool.result.>"
	// ToolReplyAll matches every result as TOOL_RESULTS republishes it once
	// stored.
	ToolReplyAll = "tool.reply.>"
	// ToolDeadAll matches every dead letter.
	ToolDeadAll = "tool.dead.>"
	// ToolCancelAll matches every cancellation request.
	ToolCancelAll = "tool.cancel.*.*"

	// CatalogResyncAll asks every sync replica's queue to re-list all servers.
	CatalogResyncAll = "catalog.resync"
	// CatalogResyncPrefix is followed by one escaped server name.
	CatalogResyncPrefix  = "catalog.resync."
	CatalogChangedPrefix = "catalog.changed."
	AgentWakePrefix      = "agent.wake."
	WebhookPrefix        = "events.webhook."
)

// DefaultAgent is the agent of a caller that names none. Without NATS
// authentication every caller may name any agent: that mode is for one
// trust domain.
const DefaultAgent = "default"

// MaxAgentLen is the longest agent id accepted.
const MaxAgentLen = 64

// ValidateAgent checks that agent is 1–64 characters of [A-Za-z0-9_-], so it
// is one subject token as it is: a NATS user name, and the token its
// permissions grant (tool.call.<agent>.>).
func ValidateAgent(agent string) error {
	if agent == "" {
		return fmt.Errorf("%w: empty", ErrInvalidAgent)
	}
	return plainToken(agent, MaxAgentLen, ErrInvalidAgent)
}

// plainToken checks that s is at most max bytes of [A-Za-z0-9_-].
func plainToken(s string, max int, kind error) error {
	if len(s) > max {
		return fmt.Errorf("%w: %d bytes, at most %d", kind, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			return fmt.Errorf("%w: %q holds %q; use letters, digits, '_' and '-'", kind, s, s[i])
		}
	}
	return nil
}

// ToolCall returns tool.call.<agent>.<server>.<tool>.
func ToolCall(agent, server, tool string) (string, error) {
	if err := ValidateAgent(agent); err != nil {
		return "", err
	}
	return withTwo(ToolCallPrefix+agent+".", server, tool)
}

// ParseToolCall returns the agent, server and tool of a tool.call subject.
func ParseToolCall(subject string) (agent, server, tool string, err error) {
	return parseThree(subject, ToolCallPrefix)
}

// ToolDead returns tool.dead.<agent>.<server>.<tool>.
func ToolDead(agent, server, tool string) (string, error) {
	if err := ValidateAgent(agent); err != nil {
		return "", err
	}
	return withTwo(ToolDeadPrefix+agent+".", server, tool)
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

// parseThree reads prefix + <agent>.<server>.<tool>.
func parseThree(subject, prefix string) (agent, server, tool string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return "", "", "", fmt.Errorf("%w: %q does not start with %q", ErrInvalidSubject, subject, prefix)
	}
	agent, rest, ok = strings.Cut(rest, ".")
	if !ok {
		return "", "", "", fmt.Errorf("%w: %q has no agent, server and tool (want %s<agent>.<server>.<tool>)", ErrInvalidSubject, subject, prefix)
	}
	if err := ValidateAgent(agent); err != nil {
		return "", "", "", fmt.Errorf("%w: %q: %v", ErrInvalidSubject, subject, err)
	}
	server, tool, err = parseTwo(rest, prefix+agent+".")
	return agent, server, tool, err
}

func parseTwo(rest, prefix string) (string, string, error) {
	st, tt, ok := strings.Cut(rest, ".")
	if !ok || tt == "" {
		return "", "", fmt.Errorf("%w: %q has no tool name (want %s<server>.<tool>)", ErrInvalidSubject, prefix+rest, prefix)
	}
	if strings.IndexByte(tt, '.') >= 0 {
		return "", "", fmt.Errorf("%w: %q has more than two tokens after %q; escape dots in names", ErrInvalidSubject, prefix+rest, prefix)
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
	return plainToken(id, MaxCallIDLen, ErrInvalidCallID)
}

// NewCallID returns a fresh, unguessable call id: 128 random bits,
// URL-safe base64 (22 characters).
func NewCallID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ToolResult returns tool.result.<agent>.<call_id>, where a call's result
// is stored. Agent and id must have passed ValidateAgent and
// ValidateCallID.
func ToolResult(agent, callID string) string { return ToolResultPrefix + agent + "." + callID }

// ToolReply returns tool.reply.<agent>.<call_id>: TOOL_RESULTS republishes
// each result there once it is stored, and only then, so a subscriber hears
// exactly the stored answers, never a write the stream refused.
func ToolReply(agent, callID string) string { return ToolReplyPrefix + agent + "." + callID }

// ToolReplies returns tool.reply.<agent>.*: every result of one agent, the
// one subscription a client needs for all its calls.
func ToolReplies(agent string) string { return ToolReplyPrefix + agent + ".*" }

// ResultDirectGet returns the JetStream API subject of a direct get of the
// last (only) message on tool.result.<agent>.<call_id>. The subject names
// the result, so NATS permissions can grant an agent
// $JS.API.DIRECT.GET.TOOL_RESULTS.tool.result.<agent>.> and nothing wider.
func ResultDirectGet(agent, callID string) string {
	return "$JS.API.DIRECT.GET." + StreamResults + "." + ToolResult(agent, callID)
}

// ToolProgress returns tool.progress.<agent>.<call_id>.
func ToolProgress(agent, callID string) string { return ToolProgressPrefix + agent + "." + callID }

// ToolCancel returns tool.cancel.<agent>.<call_id>.
func ToolCancel(agent, callID string) string { return ToolCancelPrefix + agent + "." + callID }

// Cancel is the optional body of a tool.cancel.<agent>.<call_id> message.
type Cancel struct {
	// Server and Tool name the call, so an answer given before any worker
	// took it carries them.
	Server string `json:"server,omitempty"`
	Tool   string `json:"tool,omitempty"`
	// Reason is "" (the caller cancels: the answer is cancelled) or
	// CancelDeadline (the caller's deadline passed: the answer is timeout).
	Reason string `json:"reason,omitempty"`
}

// CancelDeadline is the Cancel.Reason of a caller whose deadline passed
// while its call waited in the queue.
const CancelDeadline = "deadline"

// ParseCallRef returns the agent and call id of a
// <prefix><agent>.<call_id> subject (tool.result, tool.reply,
// tool.progress, tool.cancel).
func ParseCallRef(subject, prefix string) (agent, callID string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return "", "", fmt.Errorf("%w: %q does not start with %q", ErrInvalidSubject, subject, prefix)
	}
	agent, callID, ok = strings.Cut(rest, ".")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not %s<agent>.<call_id>", ErrInvalidSubject, subject, prefix)
	}
	if err := ValidateAgent(agent); err != nil {
		return "", "", err
	}
	if err := ValidateCallID(callID); err != nil {
		return "", "", err
	}
	return agent, callID, nil
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

// AgentWake returns agent.wake.<agent>. The agent is an agent id
// (ValidateAgent), the token its NATS permissions name.
func AgentWake(agent string) (string, error) {
	if err := ValidateAgent(agent); err != nil {
		return "", err
	}
	return AgentWakePrefix + agent, nil
}

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
