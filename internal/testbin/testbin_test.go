package testbin_test

import (
	"os"
	"testing"

	"github.com/toolbus-dev/toolbus/internal/testbin"
)

func TestBuildOnce(t *testing.T) {
	a := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/mcp-demo")
	st, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&0o111 == 0 {
		t.Fatalf("%s is not executable", a)
	}
	if b := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/mcp-demo"); b != a {
		t.Fatalf("second build gave %s, want cached %s", b, a)
	}
}
