package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/internal/scheduler"
	"github.com/toolbus-dev/toolbus/subjects"
)

func newSchedulesCmd(a *app) *cobra.Command {
	return group(&cobra.Command{
		Use:   "schedules <command>",
		Short: "add, list or remove cron schedules (resyncs, agent wake-ups, publishes); run a scheduler",
		Long: `Add, list or remove cron schedules (resyncs, agent wake-ups, publishes), or run
a scheduler replica. Schedules live in the KV bucket toolbus_schedules beside
the config file's; the replicas elect a leader, which alone publishes.`,
		Example: `  toolbus schedules add wake-planner --spec "0 9 * * 1-5" --tz Europe/Paris --kind wake --agent planner --payload '{"reason":"daily"}'
  toolbus schedules list
  toolbus schedules run --name replica-2`,
	}, newSchedulesAddCmd(a), newSchedulesListCmd(a), newSchedulesRmCmd(a), newSchedulesRunCmd(a))
}

func newSchedulesAddCmd(a *app) *cobra.Command {
	var (
		s                     scheduler.Schedule
		kind, payload, missed string
		timeout               time.Duration
		hdrs                  = pairFlags{}
	)
	cmd := &cobra.Command{
		Use:   "add <name>",
		Short: "store a schedule (replaces one of the same name)",
		Example: `  toolbus schedules add wake-planner --spec "0 9 * * 1-5" --tz Europe/Paris --kind wake --agent planner --payload '{"reason":"daily"}'
  toolbus schedules add nightly-report --spec "@daily" --kind publish --subject tool.call.reports.build --payload '{}'
  toolbus schedules add resync-search --spec "@every 10m" --kind resync --server search`,
		Args: wantArgs(1, 1, "one schedule name"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			s.Name = pos[0]
			s.Kind = scheduler.Kind(kind)
			s.Missed = scheduler.Missed(missed)
			s.Timeout = subjects.Duration(timeout)
			if len(hdrs) > 0 {
				s.Headers = hdrs
			}
			if payload != "" {
				s.Payload = json.RawMessage(payload)
			}
			if err := s.Validate(); err != nil {
				return usagef("%v", err)
			}
			nc, js, err := a.connect("toolbus-schedules", zerolog.Nop())
			if err != nil {
				return err
			}
			defer nc.Close()
			if err := scheduler.Put(cmd.Context(), js, s); err != nil {
				return err
			}
			next, _ := s.Next(time.Now())
			fmt.Fprintf(cmd.OutOrStdout(), "schedule %q stored: %s → %s, next run %s\n", s.Name, s.Spec, s.Target(), fmtTime(next, s.TZ))
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&s.Spec, "spec", "", `cron spec with optional seconds ("0 9 * * *", "*/10 * * * * *"), "@every 10m" or "@hourly" (required)`)
	fs.StringVar(&s.TZ, "tz", "", "IANA time zone the spec is read in (default UTC)")
	fs.StringVar(&kind, "kind", "", "resync, wake or publish (required)")
	fs.StringVar(&s.Server, "server", "", "resync: the server to resync (default all)")
	fs.StringVar(&s.Agent, "agent", "", "wake: the agent to wake")
	fs.StringVar(&s.Subject, "subject", "", "publish: the subject, e.g. tool.call.<agent>.<server>.<tool> (the scheduler's NATS user must be allowed to publish it)")
	fs.StringVar(&payload, "payload", "", "message body, JSON (for a tool call: its arguments)")
	fs.StringVar(&missed, "missed", "skip", "ticks missed while every scheduler was down: skip, or once (fire once on return)")
	fs.DurationVar(&timeout, "timeout", 0, "publish to tool.call: the call's deadline (default 5m)")
	fs.Var(hdrs, "header", "extra header Name=value (repeatable)")
	return cmd
}

func newSchedulesListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "list schedules with the leader, next run and last fire",
		Long: `List schedules with the leader, next run and last fire. The config file's
schedules appear once they have fired.`,
		Example: `  toolbus schedules list
  toolbus schedules list --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			nc, js, err := a.connect("toolbus-schedules", zerolog.Nop())
			if err != nil {
				return err
			}
			defer nc.Close()
			now := time.Now()
			infos, err := scheduler.List(ctx, js, now)
			if err != nil {
				return err
			}
			leader, err := scheduler.CurrentLeader(ctx, js, now)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, struct {
					Leader    *scheduler.LeaderInfo `json:"leader"`
					Schedules []scheduler.Info      `json:"schedules"`
				}{leader, infos})
			}
			fmt.Fprintln(out, leaderLine(leader, now))
			if len(infos) == 0 {
				fmt.Fprintln(out, "no schedules (config schedules appear here once they have fired)")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSPEC\tTZ\tKIND\tTARGET\tNEXT RUN\tLAST FIRE\tSOURCE")
			for _, in := range infos {
				s := in.Schedule
				tz := s.TZ
				if tz == "" {
					tz = "UTC"
				}
				last := "never"
				if in.Status != nil {
					last = fmtTime(in.Status.LastFire, s.TZ)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec, tz, s.Kind, s.Target(), fmtTime(in.Next, s.TZ), last, in.Source)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// leaderLine says which scheduler replica publishes the ticks.
func leaderLine(l *scheduler.LeaderInfo, now time.Time) string {
	if l == nil {
		return "leader: none (no scheduler running)"
	}
	ago := now.Sub(l.RenewedAt).Round(100 * time.Millisecond)
	if l.Expired {
		return fmt.Sprintf("leader: none (%s stopped renewing its lease %s ago; the next replica to look takes over)", l.Name, ago)
	}
	return fmt.Sprintf("leader: %s since %s (lease renewed %s ago)", l.Name, fmtTime(l.Since, ""), max(ago, 0))
}

func newSchedulesRmCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "rm <name>",
		Aliases: []string{"remove", "delete"},
		Short:   "remove a stored schedule (config file schedules are removed by editing the file)",
		Example: `  toolbus schedules rm wake-planner`,
		Args:    wantArgs(1, 1, "one schedule name"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			nc, js, err := a.connect("toolbus-schedules", zerolog.Nop())
			if err != nil {
				return err
			}
			defer nc.Close()
			if err := scheduler.Delete(cmd.Context(), js, pos[0]); err != nil {
				if errors.Is(err, scheduler.ErrNotFound) {
					return fmt.Errorf("%w (schedules from a config file are removed by editing the file)", err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "schedule %q removed\n", pos[0])
			return nil
		},
	}
}

// newSchedulesRunCmd runs one scheduler replica: the config file's
// schedules and the bucket's. Run several for availability: they elect a
// leader, which alone publishes, so each tick fires once.
func newSchedulesRunCmd(a *app) *cobra.Command {
	var configPath, logLevel, name string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "run a scheduler replica (several elect a leader; each tick fires once)",
		Long: `Run one scheduler replica: the config file's schedules and the bucket's. Run
several for availability (toolbus serve runs one): they elect a leader with a
KV lease, which alone publishes, so each tick fires once. SIGHUP re-reads the
config file's schedules.`,
		Example: `  toolbus schedules run --config toolbus.yaml --name replica-2`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkLogLevel(logLevel); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), logLevel)
			cfg, err := loadConfig(configPath, nil)
			if err != nil {
				return err
			}
			rl := newReloader(configPath, cfg, log)
			defer rl.stop()
			scheds, err := configSchedules(cfg, false)
			if err != nil {
				return err
			}
			ccfg, err := a.resolve(cfg.NATS.URL)
			if err != nil {
				return err
			}
			nc, js, err := dial(ccfg, "toolbus-scheduler", log)
			if err != nil {
				return err
			}
			defer nc.Close()
			s, err := scheduler.New(js, log, scheduler.WithSchedules(scheds), scheduler.WithName(name))
			if err != nil {
				return fmt.Errorf("%s: %w", cfg.Path, err)
			}
			// SIGHUP reloads the config file's schedules.
			rl.sched = s
			svc := &services{}
			svc.run(cmd.Context(), "scheduler", s.Run)
			svc.run(cmd.Context(), "reload", rl.run)
			return svc.wait()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&configPath, "config", "", "config file with a schedules: section (default ./toolbus.yaml if present)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&name, "name", "", "replica name, in logs and in schedules list while it leads (default host-pid)")
	return cmd
}

func fmtTime(t time.Time, tz string) string {
	if t.IsZero() {
		return "-"
	}
	if loc, err := time.LoadLocation(tz); err == nil && tz != "" {
		t = t.In(loc)
	} else {
		t = t.UTC()
	}
	return t.Format("2006-01-02 15:04:05 MST")
}
