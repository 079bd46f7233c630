package worker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/subjects"
)

func TestDecodeCall(t *testing.T) {
	h := func(kv ...string) nats.Header {
		x := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			x.Set(kv[i], kv[i+1])
		}
		return x
	}
	ok := h(subjects.HeaderCallID, "abc")
	cases := []struct {
		name, subject string
		hdr           nats.Header
		body          string
		code          subjects.Code // "" = accepted
	}{
		{"plain", "tool.call.a1.demo.add", ok, `{"a":1}`, ""},
		{"empty body is {}", "tool.call.a1.demo.add", ok, ``, ""},
		{"escaped names", "tool.call.a1.my=2Es.fs=2Eread", ok, `{}`, ""},
		{"malformed", "tool.call.a1.demo.add", ok, `{"a":`, subjects.CodeInvalidRequest},
		{"array", "tool.call.a1.demo.add", ok, `[]`, subjects.CodeInvalidArguments},
		{"null", "tool.call.a1.demo.add", ok, `null`, subjects.CodeInvalidArguments},
		{"not utf-8", "tool.call.a1.demo.add", ok, "{\"a\":\"\xff\"}", subjects.CodeInvalidRequest},
		{"too deep", "tool.call.a1.demo.add", ok, `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, subjects.CodeInvalidArguments},
		{"brackets in strings do not count", "tool.call.a1.demo.add", ok, `{"a":"` + strings.Repeat("[", 200) + `"}`, ""},
		{"no id", "tool.call.a1.demo.add", h(), `{}`, subjects.CodeInvalidRequest},
		{"bad id", "tool.call.a1.demo.add", h(subjects.HeaderCallID, "a b"), `{}`, subjects.CodeInvalidRequest},
		{"no agent", "tool.call.demo.add", ok, `{}`, subjects.CodeInvalidRequest},
		{"bad agent", "tool.call.a=2E1.demo.add", ok, `{}`, subjects.CodeInvalidRequest},
		{"bad deadline", "tool.call.a1.demo.add", h(subjects.HeaderCallID, "a", subjects.HeaderDeadline, "soon"), `{}`, subjects.CodeInvalidRequest},
		{"no tool", "tool.call.a1.demo", ok, `{}`, subjects.CodeInvalidRequest},
	}
	// The agent is the subject's token; a header naming another is ignored.
	c, _ := decodeCall("tool.call.a1.demo.add", h(subjects.HeaderCallID, "abc", "Toolbus-Agent", "victim"), nil)
	if c.agent != "a1" || !c.addressable() {
		t.Errorf("agent = %q, addressable = %v; want a1 from the subject", c.agent, c.addressable())
	}
	if c, _ := decodeCall("tool.call.a1.demo.add", h(subjects.HeaderCallID, "a b"), nil); c.addressable() {
		t.Errorf("a call with id %q is addressable", "a b")
	}
	for _, c := range cases {
		got, e := decodeCall(c.subject, c.hdr, []byte(c.body))
		switch {
		case c.code == "" && e != nil:
			t.Errorf("%s: refused: %v", c.name, e)
		case c.code != "" && (e == nil || e.Code != c.code):
			t.Errorf("%s: got %v, want %s", c.name, e, c.code)
		case c.code == "" && !json.Valid(got.args):
			t.Errorf("%s: args %q", c.name, got.args)
		}
	}
}

func FuzzDecodeCall(f *testing.F) {
	f.Add("tool.call.a1.demo.add", "abc", "2026-01-01T00:00:00Z", []byte(`{"a":1}`))
	f.Add("tool.call.a1.a=2Eb.c", "x", "", []byte(`[`))
	f.Add("tool.call...", "", "1", []byte("\xff"))
	f.Fuzz(func(t *testing.T, subject, id, deadline string, body []byte) {
		h := nats.Header{}
		h.Set(subjects.HeaderCallID, id)
		h.Set(subjects.HeaderDeadline, deadline)
		c, e := decodeCall(subject, h, body)
		if c.addressable() && (subjects.ValidateAgent(c.agent) != nil || subjects.ValidateCallID(c.id) != nil) {
			t.Fatalf("addressable call with a bad agent or id: %+v", c)
		}
		if e != nil {
			if e.Code == "" || e.Message == "" {
				t.Fatalf("error without code or message: %+v", e)
			}
			return
		}
		if len(c.args) == 0 || c.args[0] != '{' || !json.Valid(c.args) {
			t.Fatalf("accepted args %q", c.args)
		}
		if !c.addressable() || subjects.ValidateAgent(c.agent) != nil || subjects.ValidateCallID(c.id) != nil || c.server == "" || c.tool == "" {
			t.Fatalf("accepted call %+v", c)
		}
	})
}
