package mcppool

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// resultFlags reads isError and resultType from the top level of a
// CallToolResult without decoding the rest: one pass over the bytes, no
// allocation. raw is valid JSON (the transport decoded the response around
// it); anything unexpected, such as an escaped key, falls back to
// encoding/json, which also says why a result is not an object.
func resultFlags(raw []byte) (isError bool, resultType mcp.ResultType, err error) {
	if isError, resultType, ok := scanFlags(raw); ok {
		return isError, resultType, nil
	}
	var flag struct {
		IsError    bool           `json:"isError"`
		ResultType mcp.ResultType `json:"resultType"`
	}
	err = json.Unmarshal(raw, &flag)
	return flag.IsError, flag.ResultType, err
}

func scanFlags(raw []byte) (isError bool, resultType mcp.ResultType, ok bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false, "", false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return false, "", true
	}
	for i < len(raw) {
		if raw[i] != '"' {
			return false, "", false
		}
		end, escaped := stringEnd(raw, i)
		if end < 0 || escaped {
			return false, "", false
		}
		key := raw[i+1 : end-1]
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return false, "", false
		}
		v := skipSpace(raw, i+1)
		i = valueEnd(raw, v)
		if i < 0 {
			return false, "", false
		}
		// encoding/json matches names without regard to case, Unicode's
		// included: ASCII is compared here, the rest left to it.
		for _, c := range key {
			if c >= 0x80 {
				return false, "", false
			}
		}
		val := string(raw[v:i])
		switch key := strings.ToLower(string(key)); {
		case val == "null" && (key == "iserror" || key == "resulttype"):
			// encoding/json leaves the field as it was
		case key == "iserror" && (val == "true" || val == "false"):
			isError = val == "true"
		case key == "resulttype" && raw[v] == '"':
			if s, esc := stringEnd(raw, v); s != i || esc || bytes.IndexFunc(raw[v:i], func(r rune) bool { return r >= 0x80 }) >= 0 {
				return false, "", false // escapes and non-ASCII: encoding/json decodes them
			}
			resultType = mcp.ResultType(raw[v+1 : i-1])
		case key == "iserror" || key == "resulttype":
			return false, "", false // not the type encoding/json wants: let it say so
		}
		i = skipSpace(raw, i)
		switch {
		case i < len(raw) && raw[i] == ',':
			i = skipSpace(raw, i+1)
		case i < len(raw) && raw[i] == '}':
			return isError, resultType, true
		default:
			return false, "", false
		}
	}
	return false, "", false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string that starts at b[i] == '"'
// (-1 if it does not end), and whether it holds an escape.
func stringEnd(b []byte, i int) (end int, escaped bool) {
	if i >= len(b) || b[i] != '"' {
		return -1, false
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, escaped
}

// valueEnd returns the index after the JSON value that starts at b[i], or
// -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && bytes.IndexByte([]byte(",}] \t\r\n"), b[j]) < 0 {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
