package worker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"toolbus/subjects"
)

func TestDecodeCall(t *testing.T) {
	h := func(kv ...string) nats.Header {
		x := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			x.Set(kv[i], kv[i+1])
		}
		return x
	}
	ok := h(subjects.HeaderCallID, "abc", subjects.HeaderReply, "_INBOX.x.abc")
	cases := []struct {
		name, subject string
		hdr           nats.Header
		body          string
		code          subjects.Code // "" = accepted
	}{
		{"plain", "tool.call.demo.add", ok, `{"a":1}`, ""},
		{"empty body is {}", "tool.call.demo.add", ok, ``, ""},
		{"escaped names", "tool.call.my=2Es.fs=2Eread", ok, `{}`, ""},
		{"malformed", "tool.call.demo.add", ok, `{"a":`, subjects.CodeInvalidRequest},
		{"array", "tool.call.demo.add", ok, `[]`, subjects.CodeInvalidArguments},
		{"null", "tool.call.demo.add", ok, `null`, subjects.CodeInvalidArguments},
		{"not utf-8", "tool.call.demo.add", ok, "{\"a\":\"\xff\"}", subjects.CodeInvalidRequest},
		{"too deep", "tool.call.demo.add", ok, `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, subjects.CodeInvalidArguments},
		{"brackets in strings do not count", "tool.call.demo.add", ok, `{"a":"` + strings.Repeat("[", 200) + `"}`, ""},
		{"no id", "tool.call.demo.add", h(), `{}`, subjects.CodeInvalidRequest},
		{"bad id", "tool.call.demo.add", h(subjects.HeaderCallID, "a b"), `{}`, subjects.CodeInvalidRequest},
		{"bad reply", "tool.call.demo.add", h(subjects.HeaderCallID, "a", subjects.HeaderReply, "x.*"), `{}`, subjects.CodeInvalidRequest},
		{"bad deadline", "tool.call.demo.add", h(subjects.HeaderCallID, "a", subjects.HeaderDeadline, "soon"), `{}`, subjects.CodeInvalidRequest},
		{"no tool", "tool.call.demo", ok, `{}`, subjects.CodeInvalidRequest},
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
	f.Add("tool.call.demo.add", "abc", "2026-01-01T00:00:00Z", []byte(`{"a":1}`))
	f.Add("tool.call.a=2Eb.c", "x", "", []byte(`[`))
	f.Add("tool.call..", "", "1", []byte("\xff"))
	f.Fuzz(func(t *testing.T, subject, id, deadline string, body []byte) {
		h := nats.Header{}
		h.Set(subjects.HeaderCallID, id)
		h.Set(subjects.HeaderDeadline, deadline)
		c, e := decodeCall(subject, h, body)
		if e != nil {
			if e.Code == "" || e.Message == "" {
				t.Fatalf("error without code or message: %+v", e)
			}
			return
		}
		if len(c.args) == 0 || c.args[0] != '{' || !json.Valid(c.args) {
			t.Fatalf("accepted args %q", c.args)
		}
		if subjects.ValidateCallID(c.id) != nil || c.server == "" || c.tool == "" {
			t.Fatalf("accepted call %+v", c)
		}
	})
}
