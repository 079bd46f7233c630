package registry

import "testing"

func TestRedactURL(t *testing.T) {
	cases := map[string]string{
		"https://mcp.example.com/mcp":                    "https://mcp.example.com/mcp",
		"https://user:s3cret@mcp.example.com/mcp":        "https://user:xxxxx@mcp.example.com/mcp",
		"https://mcp.example.com/mcp?api_key=s3cret&x=1": "https://mcp.example.com/mcp?api_key=REDACTED&x=REDACTED",
		"npx": "npx",
	}
	for in, want := range cases {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
