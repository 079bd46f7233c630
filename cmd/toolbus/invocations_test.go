package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every toolbus invocation the README's shell blocks and the commands'
// examples show names a command that exists, with flags it takes and the
// number of arguments it wants: the README and --help are the contract.
func TestDocumentedInvocationsParse(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	inSh := false
	sc := bufio.NewScanner(strings.NewReader(string(readme)))
	for sc.Scan() {
		switch l := sc.Text(); {
		case strings.HasPrefix(l, "```sh"):
			inSh = true
		case strings.HasPrefix(l, "```"):
			inSh = false
		case inSh:
			lines = append(lines, l)
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "completion" {
			lines = append(lines, strings.Split(c.Example, "\n")...)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(&app{getenv: func(string) string { return "" }}, nil, io.Discard, io.Discard))

	n := 0
	for _, line := range lines {
		i := strings.Index(line, "toolbus ")
		if i < 0 || (i > 0 && !strings.ContainsAny(line[i-1:i], " /(")) {
			continue // not an invocation (nsc's "operator toolbus")
		}
		args := shellWords(line[i+len("toolbus "):])
		if len(args) == 0 {
			continue
		}
		n++
		root := newRootCmd(&app{getenv: func(string) string { return "" }}, nil, io.Discard, io.Discard)
		root.InitDefaultHelpCmd()
		cmd, rest, err := root.Find(args)
		if err == nil {
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			err = cmd.ParseFlags(rest)
		}
		if err == nil && cmd != root {
			err = cmd.ValidateArgs(cmd.Flags().Args())
		}
		if err == nil && cmd != root && strings.HasSuffix(cmd.Use, "<command>") {
			err = errors.New("a group without a subcommand it knows")
		}
		if err != nil {
			t.Errorf("%q does not parse: %v", line, err)
		}
	}
	if n < 40 {
		t.Fatalf("only %d invocations found", n)
	}
}

// shellWords splits a shell command line into words, honouring quotes, and
// stops at a comment, a pipe, a closing parenthesis or a command separator.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				j = len(s) - i - 1
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord, c == '|', c == ')', c == ';', c == '&':
			if inWord {
				words = append(words, cur.String())
			}
			return words
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
