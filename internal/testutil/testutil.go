// Package testutil holds the helpers toolbus's tests share: waiting for a
// condition, a logger that writes to the test, the text of a tool result,
// the messages a stream holds, a free loopback port.
//
// Each fails the test through t, so call them from the test's own
// goroutine (t.Fatal elsewhere does not stop the test).
package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// CheckFor polls f every 10ms until it returns nil or d passes, then fails
// the test with f's last error. d bounds a wait for an event, not a
// measurement: give it room on a loaded machine.
func CheckFor(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Eventually is CheckFor for a condition without an error: what names it
// in the failure.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	CheckFor(t, d, func() error {
		if cond() {
			return nil
		}
		return errors.New("waiting for " + what)
	})
}

// Logger writes to the test's log (shown for failed tests and with -v):
// everything with -v, warnings and errors otherwise.
func Logger(t testing.TB) zerolog.Logger {
	level := zerolog.WarnLevel
	if testing.Verbose() {
		level = zerolog.DebugLevel
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(level).With().Timestamp().Logger()
}

// Text returns the first text content of an MCP CallToolResult, given as
// JSON (json.RawMessage or []byte) or as a value that encodes to it (an
// *mcp.CallToolResult). It fails the test when there is none.
func Text(t testing.TB, result any) string {
	t.Helper()
	var raw []byte
	switch r := result.(type) {
	case json.RawMessage:
		raw = r
	case []byte:
		raw = r
	default:
		var err error
		if raw, err = json.Marshal(r); err != nil {
			t.Fatalf("result %+v: %v", r, err)
		}
	}
	var r struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("result %s: %v", raw, err)
	}
	for _, c := range r.Content {
		if c.Type == "text" || c.Type == "" {
			return c.Text
		}
	}
	t.Fatalf("result %s: no text content", raw)
	return ""
}

// StreamMsgs returns the messages a stream holds on subject ("" for all),
// oldest first.
func StreamMsgs(t testing.TB, js jetstream.JetStream, stream, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if subject == "" || m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Env is a fake process environment, safe for concurrent use; its Getenv
// stands in for os.Getenv. The zero value is empty.
type Env struct {
	mu sync.Mutex
	m  map[string]string
}

// Getenv returns the value of k, "" when unset.
func (e *Env) Getenv(k string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m[k]
}

// Set sets k to v.
func (e *Env) Set(k, v string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]string{}
	}
	e.m[k] = v
}

// SecretKey is a fixed 32-byte key for sealing secrets in tests.
var SecretKey = []byte("0123456789abcdef0123456789abcdef")

// SyncBuffer is a bytes.Buffer that goroutines may write while a test
// reads it: a log or a child process's output.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
