package main_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/testbin"
	"github.com/toolbus-dev/toolbus/internal/testutil"
)

// `toolbus serve` and `toolbus call` with the standard OTEL variables send
// their spans to an OTLP/HTTP receiver, in one trace under the caller's
// TRACEPARENT: its span → toolbus call → toolbus.call → toolbus.execute →
// tools/call add.
func TestTracingThroughServeAndCall(t *testing.T) {
	recv := &testutil.OTLPReceiver{}
	hs := httptest.NewServer(recv)
	t.Cleanup(hs.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", hs.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // serve exports as it goes
	bin := testbin.Build(t, "github.com/toolbus-dev/toolbus/cmd/toolbus")
	url := serve(t, bin, t.TempDir(), "--bridge", "off")

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	env := []string{"NATS_URL=" + url, "TRACEPARENT=00-" + traceID + "-" + parentID + "-01"}
	if out, errOut, code := tb(t, env, "call", "demo", "add", `{"a":2,"b":3}`); code != 0 || out != "5\n" {
		t.Fatalf("call: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	names := []string{"toolbus call", "toolbus.call", "toolbus.execute", "tools/call add"}
	testutil.CheckFor(t, 30*time.Second, func() error {
		s := recv.Trace(traceID)
		for _, n := range names {
			if s[n] == nil {
				return fmt.Errorf("no span %q in trace %s yet", n, traceID)
			}
		}
		return nil
	})
	s := recv.Trace(traceID)
	if got := hex.EncodeToString(s["toolbus call"].ParentSpanId); got != parentID {
		t.Errorf("toolbus call's parent %s, want TRACEPARENT's %s", got, parentID)
	}
	for i := 1; i < len(names); i++ {
		if !bytes.Equal(s[names[i]].ParentSpanId, s[names[i-1]].SpanId) {
			t.Errorf("%s's parent %x, want %s %x", names[i], s[names[i]].ParentSpanId, names[i-1], s[names[i-1]].SpanId)
		}
	}
	if testutil.SpanAttr(s["toolbus.call"], "toolbus.status") != "ok" || testutil.SpanAttr(s["toolbus call"], "toolbus.status") != "ok" {
		t.Errorf("status attributes: %v / %v", s["toolbus.call"].Attributes, s["toolbus call"].Attributes)
	}
	if p := recv.Problems("toolbus"); len(p) > 0 {
		t.Errorf("receiver: %v", p)
	}
}
