package catalogsync

import (
	"context"
	"testing"
	"time"

	"github.com/toolbus-dev/toolbus/internal/catalog"
	"github.com/toolbus-dev/toolbus/internal/registry"
)

// TestStartStopStress starts and stops a Syncer's Run and a Catalog many
// times, some stopped at once, some after work, and stops twice.
func TestStartStopStress(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ms := newMCPServer(t, nil, tool("a", "a"))
	h.put(httpServer("s", ms.URL))
	for i := range 20 {
		s := h.syncer(Config{Debounce: 10 * time.Millisecond})
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx) }()
		if i%2 == 1 {
			if err := registry.RequestResync(ctx(t), h.ns.JS, "s"); err != nil {
				t.Fatal(err)
			}
			s.notifyChanged("s")
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d did not stop", i)
		}

		c, err := catalog.New(ctx(t), h.ns.JS)
		if err != nil {
			t.Fatal(err)
		}
		c.Stop()
		c.Stop()
	}
	// A catalog whose context ends stops by itself.
	cctx, cancel := context.WithCancel(context.Background())
	c, err := catalog.New(cctx, h.ns.JS)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("catalog did not stop with its context")
	}
	if c.Err() != nil {
		t.Errorf("Err after cancel: %v", c.Err())
	}
}
