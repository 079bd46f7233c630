package mcppool

import (
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// resultFlags agrees with encoding/json on every input.
func FuzzResultFlags(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"isError":true}`, `{"content":[{"type":"text","text":"a\"}{"}],"isError":false}`,
		`{"isError":true,"isError":false}`, `{"resultType":"input_required","inputRequests":{}}`,
		`{"resultType":"in\u0070ut_required"}`, `{"is\u0045rror":true}`, ` { "isError" : true , "x" : [1,{"y":null}] } `,
		`{"structuredContent":{"isError":true},"isError":false}`, `[]`, `"x"`, `{"isError":1}`, `{"resultType":7}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return // the transport only hands over valid JSON
		}
		var want struct {
			IsError    bool           `json:"isError"`
			ResultType mcp.ResultType `json:"resultType"`
		}
		wantErr := json.Unmarshal(raw, &want)
		isErr, rt, err := resultFlags(raw)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%s: err %v, encoding/json %v", raw, err, wantErr)
		}
		if err == nil && (isErr != want.IsError || rt != want.ResultType) {
			t.Fatalf("%s: got %v %q, encoding/json %v %q", raw, isErr, rt, want.IsError, want.ResultType)
		}
	})
}
