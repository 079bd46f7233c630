package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/toolbus-dev/toolbus/subjects"
)

// call is a decoded call message.
type call struct {
	id           string
	agent        string // from the subject: who could publish it, never a header
	server, tool string
	args         json.RawMessage // a JSON object
	deadline     time.Time       // zero: none given
}

// addressable reports whether the call's result has a home,
// tool.result.<agent>.<call_id>: an invalid call that is addressable is
// answered there; one that is not goes straight to the dead letters.
func (c call) addressable() bool { return c.agent != "" && c.id != "" }

// maxDepth bounds JSON nesting in arguments. encoding/json allows 10000;
// nothing a tool needs comes close, and MCP servers written in other
// languages may recurse on it.
const maxDepth = 128

// decodeCall reads a call message without I/O. On bad input it returns the
// reason to answer with; c then holds what could be read (agent, id,
// server, tool) to address that answer. It never panics (fuzzed).
func decodeCall(subject string, h nats.Header, data []byte) (c call, e *subjects.Error) {
	var err error
	c.agent, c.server, c.tool, err = subjects.ParseToolCall(subject)
	idErr := subjects.ValidateCallID(h.Get(subjects.HeaderCallID))
	if idErr == nil {
		c.id = h.Get(subjects.HeaderCallID)
	}
	if err != nil {
		return c, bad(subjects.CodeInvalidRequest, "bad call subject %q: %v; publish to tool.call.<agent>.<server>.<tool> with both names escaped", subject, err)
	}
	if idErr != nil {
		return c, bad(subjects.CodeInvalidRequest, "%v", idErr)
	}
	if d := h.Get(subjects.HeaderDeadline); d != "" {
		if c.deadline, err = subjects.ParseDeadline(d); err != nil {
			return c, bad(subjects.CodeInvalidRequest, "header %s: %v", subjects.HeaderDeadline, err)
		}
	}
	args := bytes.TrimSpace(data)
	if len(args) == 0 {
		c.args = json.RawMessage("{}")
		return c, nil
	}
	// One pass for the text and the nesting, one for the JSON grammar.
	deepest, text := scan(args)
	switch {
	case !text:
		return c, bad(subjects.CodeInvalidRequest, "body is not UTF-8 text; send the arguments as a JSON object")
	case args[0] != '{':
		if json.Valid(args) {
			return c, bad(subjects.CodeInvalidArguments, "arguments must be a JSON object, got %s", jsonKind(args[0]))
		}
		return c, bad(subjects.CodeInvalidRequest, "body is not valid JSON; send the tool's arguments as a JSON object")
	case !json.Valid(args):
		var v any
		err := json.Unmarshal(args, &v)
		return c, bad(subjects.CodeInvalidRequest, "body is not valid JSON: %v", err)
	case deepest > maxDepth:
		return c, bad(subjects.CodeInvalidArguments, "arguments nest deeper than %d levels", maxDepth)
	}
	c.args = args
	return c, nil
}

func bad(code subjects.Code, format string, a ...any) *subjects.Error {
	return &subjects.Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// scan returns the deepest nesting of JSON, skipping strings, and whether b
// is UTF-8 text.
func scan(b []byte) (deepest int, text bool) {
	d, m, inStr := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return m, false
			}
			i += size - 1
			continue
		}
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			d++
			m = max(m, d)
		case '}', ']':
			d--
		}
	}
	return m, true
}

func jsonKind(b byte) string {
	switch b {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
