package bench

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary is also the load generator and the MCP server: Run
// starts os.Executable() with the bench-loadgen command, as the toolbus
// binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == LoadgenCommand {
		os.Exit(LoadgenMain(os.Args[2:], os.Stdout))
	}
	os.Exit(m.Run())
}

// The harness behind `toolbus bench` runs end to end: an agent in another
// process over TCP and a direct client, both tools, two sizes (a smoke
// run: figures come from `make bench-doc`).
func TestRunMeasuresBothPaths(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Options{Concurrency: []int{1, 4}, Sizes: []int{100, 10 << 10}, Duration: 200 * time.Millisecond, Rounds: 1}, &out)
	if err != nil {
		t.Fatal(err)
	}
	table := out.String()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	// header, separator, 2 sizes x 2 levels x (direct + 2 bus tools + front door)
	if len(lines) != 2+2*2*4 {
		t.Fatalf("%d lines:\n%s", len(lines), table)
	}
	for _, l := range lines[2:] {
		cells := strings.Split(l, "|")
		if errs := strings.TrimSpace(cells[len(cells)-2]); errs != "0" {
			t.Errorf("row with errors: %s", l)
		}
		if strings.Contains(l, "| bus |") && !strings.Contains(l, "×, p50") {
			t.Errorf("bus row without its ratio to direct: %s", l)
		}
		if strings.Contains(l, "| bus |") && strings.Contains(l, "| – |") {
			t.Errorf("bus row without serve CPU per call: %s", l)
		}
	}
}

// A burst puts every call in flight at once and waits for all results.
func TestInflightBurst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	prof := filepath.Join(t.TempDir(), "heap.pb.gz")
	if err := Run(ctx, Options{Inflight: 200, SleepFor: 200 * time.Millisecond, HeapProfile: prof}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| 200 | sleep | 200ms | 200 | 0 |") {
		t.Fatalf("report:\n%s", out.String())
	}
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Fatalf("heap profile: %v", err)
	}
}

// A soak samples the serve side and fits a slope.
func TestSoakSamples(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := Run(ctx, Options{Soak: 2 * time.Second, SoakConcurrency: 4, SampleEvery: 500 * time.Millisecond}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "MiB/min") || !strings.Contains(out.String(), ", 0 errors") {
		t.Fatalf("report:\n%s", out.String())
	}
}

func TestReplaceSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "doc.md")
	os.WriteFile(p, []byte("intro\n<!-- bench:table:begin -->\nold\n<!-- bench:table:end -->\nafter\n"), 0o644)
	if err := ReplaceSection(p, "table", "new\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if want := "intro\n<!-- bench:table:begin -->\nnew\n<!-- bench:table:end -->\nafter\n"; string(got) != want {
		t.Fatalf("got %q", got)
	}
	if err := ReplaceSection(p, "soak", "x"); err == nil {
		t.Fatal("no error for a missing section")
	}
}

// rows returns the table rows of a Markdown table (header and separator
// dropped), failing the test on any row with errors.
func rows(t *testing.T, table string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) < 2 {
		t.Fatalf("no table:\n%s", table)
	}
	for _, l := range lines[2:] {
		cells := strings.Split(l, "|")
		if errs := strings.TrimSpace(cells[len(cells)-2]); errs != "0" {
			t.Errorf("row with errors: %s", l)
		}
	}
	return lines[2:]
}

// The front door path (an mcp-go client in the agent process → the front
// door → bus → worker) and a --serve-bin (a toolbus binary run as `serve`,
// its CPU read from /proc) each produce their rows.
func TestFrontDoorAndServeBin(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build toolbus for --serve-bin")
	}
	toolbus := filepath.Join(t.TempDir(), "toolbus")
	if out, err := exec.Command(gobin, "build", "-o", toolbus, "github.com/toolbus-dev/toolbus/cmd/toolbus").CombinedOutput(); err != nil {
		t.Fatalf("build toolbus: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err = Run(ctx, Options{Concurrency: []int{1, 4}, Sizes: []int{100}, Duration: 200 * time.Millisecond, Rounds: 1,
		Only: "frontdoor", ServeBins: []string{toolbus}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	tables := strings.Split(strings.TrimSpace(out.String()), "\n\n")
	if len(tables) != 2 {
		t.Fatalf("want the paths table and the --serve-bin table:\n%s", out.String())
	}
	fd, sb := rows(t, tables[0]), rows(t, tables[1])
	if len(fd) != 2 || len(sb) != 2 {
		t.Fatalf("want 2 front-door rows and 2 serve rows:\n%s", out.String())
	}
	for _, l := range fd {
		if !strings.Contains(l, "| frontdoor | echo |") || strings.Contains(l, "| – |") {
			t.Errorf("front-door row without its path or serve CPU: %s", l)
		}
	}
	for _, l := range sb {
		if !strings.Contains(l, "| serve toolbus | echo_plain |") || strings.Contains(l, "| – |") || strings.Contains(l, "| 0 MiB |") {
			t.Errorf("serve row without its path, CPU or RSS: %s", l)
		}
	}

	// --inflight with --serve-bin: the burst through the binary's serve too.
	out.Reset()
	if err := Run(ctx, Options{Inflight: 100, SleepFor: 200 * time.Millisecond, InflightTool: "sleep_plain", Rounds: 1, ServeBins: []string{toolbus}, MemoryLimit: "64MiB"}, &out); err != nil {
		t.Fatal(err)
	}
	tables = strings.Split(strings.TrimSpace(out.String()), "\n\n")
	if len(tables) != 2 {
		t.Fatalf("want the in-process burst and the --serve-bin burst:\n%s", out.String())
	}
	sb = strings.Split(tables[1], "\n")[2:] // errors are the fourth column: checked below
	if len(sb) != 1 || !strings.HasPrefix(sb[0], "| toolbus | sleep_plain | 1 | 100 | 0 |") || strings.Contains(sb[0], "| 0 MiB |") {
		t.Errorf("want one burst of 100 completed through serve, with its RSS:\n%s", out.String())
	}
	// The memory limit reaches serve: one it refuses fails the run.
	if err := Run(ctx, Options{Inflight: 10, SleepFor: 10 * time.Millisecond, Rounds: 1, ServeBins: []string{toolbus}, MemoryLimit: "lots"}, io.Discard); err == nil {
		t.Error("serve took --memory-limit lots")
	}
}

// The mcp-proxy path, where a binary of TBXark/mcp-proxy is at hand
// (MCP_PROXY, else /tmp/peer/mcp-proxy; CI has none).
func TestMCPProxyPath(t *testing.T) {
	bin := os.Getenv("MCP_PROXY")
	if bin == "" {
		bin = "/tmp/peer/mcp-proxy"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no mcp-proxy binary: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Options{Concurrency: []int{1, 4}, Sizes: []int{100}, Duration: 200 * time.Millisecond, Rounds: 1,
		Only: "mcp-proxy", MCPProxy: bin}, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rows(t, out.String()) {
		if !strings.Contains(l, "| mcp-proxy | echo |") || strings.Contains(l, "| – |") {
			t.Errorf("mcp-proxy row without its path or CPU: %s", l)
		}
	}
}

// The floor path (floor.go: a minimal JetStream worker beside toolbus's)
// answers the agent's calls: a floor row for the annotated echo, a
// floor_mark row (a ledger mark per call) for echo_plain, each with its
// ratio to direct and its serve CPU.
func TestFloorPath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Options{Concurrency: []int{1, 4}, Sizes: []int{100}, Duration: 200 * time.Millisecond, Rounds: 1,
		Only: "direct,floor"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	got := rows(t, out.String())
	if len(got) != 2*3 {
		t.Fatalf("want direct, floor and floor_mark at 2 levels:\n%s", out.String())
	}
	for i, want := range []string{"| direct | echo |", "| floor | echo |", "| floor_mark | echo_plain |"} {
		for _, l := range []string{got[i], got[3+i]} {
			if !strings.Contains(l, want) {
				t.Errorf("want %s: %s", want, l)
			}
			if want != "| direct | echo |" && (!strings.Contains(l, "×, p50") || strings.Contains(l, "| – |")) {
				t.Errorf("floor row without its ratio to direct or serve CPU: %s", l)
			}
		}
	}
}
