package subjects

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

var kvKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

func TestEscapeToken(t *testing.T) {
	cases := []struct{ in, want string }{
		{"github", "github"},
		{"get_weather", "get_weather"},
		{"my-server", "my-server"},
		{"fs.read", "fs=2Eread"},
		{"a*b>c", "a=2Ab=3Ec"},
		{"two words", "two=20words"},
		{"x=y", "x=3Dy"},
		{"é", "=C3=A9"},
		{"工具", "=E5=B7=A5=E5=85=B7"},
	}
	for _, c := range cases {
		got, err := EscapeToken(c.in)
		if err != nil {
			t.Fatalf("EscapeToken(%q): %v", c.in, err)
		}
		if got != c.want {
			t.Errorf("EscapeToken(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := UnescapeToken(got)
		if err != nil || back != c.in {
			t.Errorf("UnescapeToken(%q) = %q, %v; want %q", got, back, err, c.in)
		}
	}
}

func TestEscapeTokenRejects(t *testing.T) {
	for _, in := range []string{"", strings.Repeat("a", MaxNameLen+1), "\xff\xfe"} {
		if _, err := EscapeToken(in); !errors.Is(err, ErrInvalidName) {
			t.Errorf("EscapeToken(%q) err = %v, want ErrInvalidName", in, err)
		}
	}
	if _, err := EscapeToken(strings.Repeat("é", MaxNameLen)); err != nil {
		t.Errorf("128 two-byte characters should fit: %v", err)
	}
}

func TestUnescapeTokenRejects(t *testing.T) {
	for _, in := range []string{"", "a.b", "a*", "=", "=4", "=zz", "=41" /* needless */, "=FF" /* not utf-8 */, "a b"} {
		if _, err := UnescapeToken(in); err == nil {
			t.Errorf("UnescapeToken(%q) succeeded, want error", in)
		}
	}
}

func TestToolCallRoundTrip(t *testing.T) {
	subj, err := ToolCall("agent-7", "my.server", "fs.read file")
	if err != nil {
		t.Fatal(err)
	}
	if subj != "tool.call.agent-7.my=2Eserver.fs=2Eread=20file" {
		t.Fatalf("subject = %q", subj)
	}
	a, s, tool, err := ParseToolCall(subj)
	if err != nil || a != "agent-7" || s != "my.server" || tool != "fs.read file" {
		t.Fatalf("ParseToolCall = %q, %q, %q, %v", a, s, tool, err)
	}
	for _, bad := range []string{"tool.call.x", "tool.call.a.x", "tool.call.a.x.y.z", "tool.result.a.x.y", "tool.call.a..y", "tool.call.a.x.", "tool.call..x.y", "tool.call.a=2E.x.y"} {
		if _, _, _, err := ParseToolCall(bad); err == nil {
			t.Errorf("ParseToolCall(%q) succeeded", bad)
		}
	}
	if _, err := ToolCall("a.b", "s", "t"); !errors.Is(err, ErrInvalidAgent) {
		t.Errorf("ToolCall with agent a.b = %v, want ErrInvalidAgent", err)
	}
}

func TestCallRefRoundTrip(t *testing.T) {
	for _, prefix := range []string{ToolResultPrefix, ToolReplyPrefix, ToolProgressPrefix, ToolCancelPrefix} {
		subj := prefix + "agent1.call-1"
		a, id, err := ParseCallRef(subj, prefix)
		if err != nil || a != "agent1" || id != "call-1" {
			t.Errorf("ParseCallRef(%q) = %q, %q, %v", subj, a, id, err)
		}
	}
	if got := ToolResult("agent1", "c1"); got != "tool.result.agent1.c1" {
		t.Errorf("ToolResult = %q", got)
	}
	for _, bad := range []string{"tool.cancel.c1", "tool.cancel.a.b.c", "tool.cancel.a*.c", "tool.cancel..c", "tool.result.a.c"} {
		if _, _, err := ParseCallRef(bad, ToolCancelPrefix); err == nil {
			t.Errorf("ParseCallRef(%q) succeeded", bad)
		}
	}
}

func TestValidateAgent(t *testing.T) {
	for _, ok := range []string{"a", "agent1", "team_a-7", strings.Repeat("x", 64)} {
		if err := ValidateAgent(ok); err != nil {
			t.Errorf("ValidateAgent(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a*", "a b", ">", strings.Repeat("x", 65), "é", "a=20"} {
		if err := ValidateAgent(bad); !errors.Is(err, ErrInvalidAgent) {
			t.Errorf("ValidateAgent(%q) = %v, want ErrInvalidAgent", bad, err)
		}
	}
}

func TestValidateCallID(t *testing.T) {
	for _, ok := range []string{"a", "01J9ZK3F0000", "call_1-2", strings.Repeat("x", 64)} {
		if err := ValidateCallID(ok); err != nil {
			t.Errorf("ValidateCallID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a*", "a b", "a>", strings.Repeat("x", 65), "é"} {
		if err := ValidateCallID(bad); !errors.Is(err, ErrInvalidCallID) {
			t.Errorf("ValidateCallID(%q) = %v, want ErrInvalidCallID", bad, err)
		}
	}
}

func TestCatalogKeyIsKVKey(t *testing.T) {
	k, err := CatalogKey("my server", "fs.read")
	if err != nil {
		t.Fatal(err)
	}
	if !kvKey.MatchString(k) {
		t.Fatalf("catalog key %q is not a valid KV key", k)
	}
}

func TestResyncSubjects(t *testing.T) {
	all, _ := CatalogResync("")
	if s, err := ParseCatalogResync(all); err != nil || s != "" {
		t.Fatalf("all: %q %v", s, err)
	}
	one, _ := CatalogResync("a.b")
	if s, err := ParseCatalogResync(one); err != nil || s != "a.b" {
		t.Fatalf("one: %q %v", s, err)
	}
}

func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"a", "fs.read", "a*b>c", " ", "=", "工具", "\t", "~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		tok, err := EscapeToken(name)
		if err != nil {
			if name != "" && utf8.ValidString(name) && utf8.RuneCountInString(name) <= MaxNameLen {
				t.Fatalf("EscapeToken(%q) failed: %v", name, err)
			}
			return
		}
		if !ValidToken(tok) || !kvKey.MatchString(tok) {
			t.Fatalf("EscapeToken(%q) = %q: not a valid token / KV key", name, tok)
		}
		back, err := UnescapeToken(tok)
		if err != nil || back != name {
			t.Fatalf("round trip %q -> %q -> %q, %v", name, tok, back, err)
		}
	})
}

func FuzzUnescapeToken(f *testing.F) {
	for _, s := range []string{"a", "fs=2Eread", "=", "=zz", "a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		name, err := UnescapeToken(tok)
		if err != nil {
			return
		}
		again, err := EscapeToken(name)
		if err != nil {
			// names over MaxNameLen decode but do not encode; that is fine.
			if utf8.RuneCountInString(name) > MaxNameLen {
				return
			}
			t.Fatalf("EscapeToken(%q) after unescape: %v", name, err)
		}
		if again != tok {
			t.Fatalf("unescape/escape not canonical: %q -> %q -> %q", tok, name, again)
		}
	})
}
