package subjects_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/toolbus-dev/toolbus/subjects"
)

// A call's subject names its agent, server and tool. A tool name may hold
// dots and spaces, which NATS tokens may not: they are escaped, and the
// parser gives the names back.
func ExampleToolCall() {
	subj, err := subjects.ToolCall("alice", "github", "repos.list all")
	if err != nil {
		panic(err)
	}
	fmt.Println(subj)

	agent, server, tool, err := subjects.ParseToolCall(subj)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s %q\n", agent, server, tool)
	// Output:
	// tool.call.alice.github.repos=2Elist=20all
	// alice github "repos.list all"
}

// EscapeToken turns any name into one subject token; UnescapeToken reverses
// it. Plain names stay as they are.
func ExampleEscapeToken() {
	for _, name := range []string{"weather", "fs.read", "a*b>c", "café"} {
		tok, _ := subjects.EscapeToken(name)
		back, _ := subjects.UnescapeToken(tok)
		fmt.Printf("%-8s %-14s %s\n", name, tok, back)
	}
	_, err := subjects.EscapeToken("")
	fmt.Println(errors.Is(err, subjects.ErrInvalidName))
	// Output:
	// weather  weather        weather
	// fs.read  fs=2Eread      fs.read
	// a*b>c    a=2Ab=3Ec      a*b>c
	// café     caf=C3=A9      café
	// true
}

// Results arrive on the agent's own subjects; the stored one is also a
// direct get away.
func ExampleToolResult() {
	fmt.Println(subjects.ToolResult("alice", "c-1"))
	fmt.Println(subjects.ToolReply("alice", "c-1"))
	fmt.Println(subjects.ToolReplies("alice"))
	// Output:
	// tool.result.alice.c-1
	// tool.reply.alice.c-1
	// tool.reply.alice.*
}

// A result names its status: ok and tool_error carry the MCP
// CallToolResult untouched; error carries a stable code to switch on.
func ExampleResult() {
	for _, raw := range []string{
		`{"call_id":"c-1","server":"demo","tool":"echo","status":"ok","result":{"content":[{"type":"text","text":"hi"}]}}`,
		`{"call_id":"c-2","server":"demo","tool":"nope","status":"error","error":{"code":"unknown_tool","message":"server \"demo\" has no tool \"nope\""}}`,
	} {
		var res subjects.Result
		if err := json.Unmarshal([]byte(raw), &res); err != nil {
			panic(err)
		}
		var e *subjects.Error
		switch err := res.Err(); {
		case err == nil:
			fmt.Printf("%s: %s %s\n", res.CallID, res.Status, res.Result)
		case errors.As(err, &e) && e.Code == subjects.CodeUnknownTool:
			fmt.Printf("%s: %s (%d): %s\n", res.CallID, e.Code, e.Code.HTTPish(), e.Message)
		}
	}
	// Output:
	// c-1: ok {"content":[{"type":"text","text":"hi"}]}
	// c-2: unknown_tool (404): server "demo" has no tool "nope"
}
