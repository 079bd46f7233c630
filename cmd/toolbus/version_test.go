package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// The version names the module version and the VCS stamp of the build.
func TestFormatVersion(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/toolbus-dev/toolbus", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "391e99fc40fccdcc916b190f116ed4ecbbb231d4"},
			{Key: "vcs.time", Value: "2026-11-29T08:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := formatVersion(buildInfoOf(bi, true))
	for _, want := range []string{"toolbus v1.4.0 (github.com/toolbus-dev/toolbus)", "revision 391e99fc40fccdcc916b190f116ed4ecbbb231d4 (modified)", "committed 2026-11-29T08:00:00Z", "built with go1.26.8"} {
		if !strings.Contains(got, want) {
			t.Errorf("version %q lacks %q", got, want)
		}
	}
	if got := formatVersion(buildInfoOf(nil, false)); !strings.HasPrefix(got, "toolbus (unknown)") {
		t.Errorf("without build info: %q", got)
	}
}
