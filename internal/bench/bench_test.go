package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The harness behind `toolbus bench` runs end to end and measures the
// three paths (direct, bus, MCP front door) without errors (a smoke run:
// figures come from `make bench`).
func TestRunMeasuresEveryPath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := Run(ctx, Options{Concurrency: []int{1, 4}, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rows))
	}
	for _, r := range rows {
		if r.Calls == 0 || r.Errors != 0 || r.P50 <= 0 {
			t.Fatalf("row %+v", r)
		}
	}
	var out bytes.Buffer
	Print(&out, rows)
	if !strings.Contains(out.String(), "vs direct") || !strings.Contains(out.String(), "x throughput") || !strings.Contains(out.String(), "frontdoor") {
		t.Fatalf("table:\n%s", out.String())
	}
}
