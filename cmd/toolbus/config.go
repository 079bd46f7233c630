package main

import (
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/config"
)

// loadConfig reads toolbus.yaml: path, else ./toolbus.yaml if present, else
// the built-in default (the demo server). With a logger it logs what it
// loaded.
func loadConfig(path string, log *zerolog.Logger) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil || log == nil {
		return cfg, err
	}
	src := cfg.Path
	if src == "" {
		src = "built-in default (demo server)"
	}
	names := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.ServerList() {
		names = append(names, s.Name)
	}
	log.Info().Str("config", src).Strs("servers", names).Msg("configuration loaded")
	return cfg, nil
}
