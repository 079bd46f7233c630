package main

import (
	"testing"

	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/internal/scheduler"
)

// toolbus.example.yaml's hooks and schedules are valid for the bridge and
// the scheduler, not only parseable.
func TestExampleConfigSections(t *testing.T) {
	cfg, err := config.Load("../../toolbus.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	hooks, _, err := loadHooks(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		if err := h.Validate(); err != nil {
			t.Errorf("hook %s: %v", h.Name, err)
		}
	}
	var scheds []scheduler.Schedule
	if err := config.Decode("schedules", cfg.Schedules, &scheds); err != nil {
		t.Fatal(err)
	}
	for _, s := range scheds {
		if err := s.Validate(); err != nil {
			t.Errorf("schedule %s: %v", s.Name, err)
		}
	}
}
