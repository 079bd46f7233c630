// Package testbin builds Go binaries for tests that need a real subprocess,
// such as an MCP server over stdio. Each package is built once per test
// process, into a temporary directory that lives as long as the process.
package testbin

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	dirOnce sync.Once
	dir     string
	dirErr  error

	mu     sync.Mutex
	builds = map[string]*build{}
)

// build is one package's build, shared by every test that asks for it.
type build struct {
	once sync.Once
	bin  string
	out  []byte
	err  error
}

// Build compiles the main package pkg (an import path such as
// "github.com/toolbus-dev/toolbus/cmd/mcp-demo") and returns the path of the binary. The first call
// for a pkg builds it; later calls, from any test in the process, reuse the
// result. A build failure fails t with the compiler's output.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	dirOnce.Do(func() {
		// Not t.TempDir: the binary outlives the test that built it.
		dir, dirErr = os.MkdirTemp("", "toolbus-testbin-")
	})
	if dirErr != nil {
		t.Fatalf("testbin: temp dir: %v", dirErr)
	}

	mu.Lock()
	b, ok := builds[pkg]
	if !ok {
		b = &build{}
		builds[pkg] = b
	}
	mu.Unlock()

	b.once.Do(func() {
		name := path.Base(pkg)
		if runtime.GOOS == "windows" {
			name += ".exe"
		}
		b.bin = filepath.Join(dir, name+"-"+sanitize(pkg), name)
		if b.err = os.MkdirAll(filepath.Dir(b.bin), 0o755); b.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", b.bin, pkg)
		b.out, b.err = cmd.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("testbin: go build %s: %v\n%s", pkg, b.err, b.out)
	}
	return b.bin
}

// sanitize makes an import path usable as one directory name, so two
// packages with the same base name do not overwrite each other.
func sanitize(pkg string) string {
	out := []byte(pkg)
	for i, c := range out {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			out[i] = '_'
		}
	}
	return string(out)
}
