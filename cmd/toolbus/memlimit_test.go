package main

import (
	"errors"
	"math"
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/config"
)

// serve and worker set a soft memory limit: worker.memory_limit or
// --memory-limit, 192MiB by default, "off" for none, and leave it alone
// when GOMEMLIMIT is set.
func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	env := func(kv map[string]string) *app { return &app{getenv: func(k string) string { return kv[k] }} }
	cases := []struct {
		name, flag, key string
		env             map[string]string
		want            int64
	}{
		{"default", "", "", nil, config.DefaultMemoryLimit},
		{"config", "", "512MiB", nil, 512 << 20},
		{"flag over config", "1GiB", "512MiB", nil, 1 << 30},
		{"off", "off", "", nil, math.MaxInt64},
		{"GOMEMLIMIT wins", "1GiB", "", map[string]string{"GOMEMLIMIT": "300MiB"}, 77 << 20},
	}
	for _, c := range cases {
		debug.SetMemoryLimit(77 << 20)
		cfg := &config.Config{Worker: config.Worker{MemoryLimit: c.key}}
		if err := (&runFlags{memoryLimit: c.flag}).setMemoryLimit(env(c.env), cfg, zerolog.Nop()); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := debug.SetMemoryLimit(-1); got != c.want {
			t.Errorf("%s: limit %d, want %d", c.name, got, c.want)
		}
	}
	err := (&runFlags{memoryLimit: "lots"}).setMemoryLimit(env(nil), &config.Config{}, zerolog.Nop())
	if !errors.Is(err, errUsage) {
		t.Fatalf("--memory-limit lots: %v, want a usage error", err)
	}
}
