package frontdoor

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
)

// Separator joins a server's name and a tool's name in tools/list.
const Separator = "__"

// MaxNameLen is the longest tool name the front door lists: what the
// strictest MCP hosts and LLM function-calling APIs accept
// (^[a-zA-Z0-9_-]{1,64}$).
const MaxNameLen = 64

// hashLen is the number of hex digits of the stable hash a shortened name
// ends with.
const hashLen = 8

// validNameByte reports whether b may appear in a listed tool name.
func validNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}

// sanitize replaces every byte a tool name may not hold with '_'.
func sanitize(s string) (string, bool) {
	clean := true
	b := []byte(s)
	for i, c := range b {
		if !validNameByte(c) {
			b[i] = '_'
			clean = false
		}
	}
	return string(b), clean
}

// nameHash is the stable hash of a (server, tool) pair.
func nameHash(server, tool string) string {
	h := sha256.Sum256([]byte(server + "\x00" + tool))
	return hex.EncodeToString(h[:])[:hashLen]
}

// hashed is readable shortened to fit with "_" and the pair's hash.
func hashed(readable, server, tool string) string {
	keep := MaxNameLen - hashLen - 1
	if len(readable) > keep {
		readable = readable[:keep]
	}
	return readable + "_" + nameHash(server, tool)
}

// ToolName is the name a tool is listed under: "<server>__<tool>" when that
// is a valid name of at most 64 characters, else that form with invalid
// characters replaced by '_', cut short, and ended by "_" and 8 hex digits
// of a hash of the exact server and tool names, so it stays unique and the
// same from one listing to the next.
func ToolName(server, tool string) string {
	s, okS := sanitize(server)
	t, okT := sanitize(tool)
	readable := s + Separator + t
	if okS && okT && len(readable) <= MaxNameLen {
		return readable
	}
	return hashed(readable, server, tool)
}

// ValidName reports whether name may be listed: 1-64 of [A-Za-z0-9_-].
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !validNameByte(name[i]) {
			return false
		}
	}
	return true
}

// ref names one catalog tool.
type ref struct{ server, tool string }

func (r ref) key() string { return r.server + "/" + r.tool }

// assignNames gives every ref its listed name: a rename when the policy
// has one, else ToolName. Where two refs would share a name, each of them
// takes its hashed form instead, so names stay unique without depending on
// the order tools arrived in.
func assignNames(refs []ref, rename func(ref) (string, bool)) map[string]ref {
	names := make(map[ref]string, len(refs))
	count := map[string]int{}
	for _, r := range refs {
		n, ok := rename(r)
		if !ok {
			n = ToolName(r.server, r.tool)
		}
		names[r] = n
		count[n]++
	}
	out := make(map[string]ref, len(refs))
	sorted := append([]ref(nil), refs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].key() < sorted[j].key() })
	for _, r := range sorted {
		n := names[r]
		if count[n] > 1 {
			s, _ := sanitize(r.server)
			t, _ := sanitize(r.tool)
			n = hashed(s+Separator+t, r.server, r.tool)
		}
		for _, taken := out[n]; taken; _, taken = out[n] {
			// A hash collision, or a rename equal to another's hashed
			// form: extend deterministically.
			n = hashed(strings.TrimSuffix(n, "_"), n, r.key())
		}
		out[n] = r
	}
	return out
}
