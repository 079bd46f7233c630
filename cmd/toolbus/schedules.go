package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/config"
	"github.com/toolbus-dev/toolbus/internal/scheduler"
	"github.com/toolbus-dev/toolbus/subjects"
)

func init() {
	c := &command{
		name:    "schedules",
		summary: "add, list or remove cron schedules (resyncs, agent wake-ups, publishes); run a scheduler",
		usage: `toolbus schedules add [flags] <name>
       toolbus schedules list [--json]
       toolbus schedules rm <name>
       toolbus schedules run [--config toolbus.yaml] [--name replica]`,
	}
	c.run = func(ctx context.Context, args []string) error {
		if len(args) == 0 {
			newFlags(c).Usage()
			return usagef("want a subcommand: add, list, rm or run")
		}
		switch args[0] {
		case "add":
			return schedulesAdd(ctx, c, args[1:])
		case "list", "ls":
			return schedulesList(ctx, c, args[1:])
		case "rm", "remove", "delete":
			return schedulesRm(ctx, c, args[1:])
		case "run":
			return schedulesRun(ctx, c, args[1:])
		case "-h", "--help", "help":
			newFlags(c).Usage()
			return flag.ErrHelp
		}
		return usagef("unknown subcommand %q: want add, list, rm or run", args[0])
	}
	register(c)
}

func schedulesAdd(ctx context.Context, c *command, args []string) error {
	fs := newFlags(c)
	conn := addConnFlags(fs)
	var s scheduler.Schedule
	fs.StringVar(&s.Spec, "spec", "", `cron spec with optional seconds ("0 9 * * *", "*/10 * * * * *"), "@every 10m" or "@hourly" (required)`)
	fs.StringVar(&s.TZ, "tz", "", "IANA time zone the spec is read in (default UTC)")
	kind := fs.String("kind", "", "resync, wake or publish (required)")
	fs.StringVar(&s.Server, "server", "", "resync: the server to resync (default all)")
	fs.StringVar(&s.Agent, "agent", "", "wake: the agent to wake")
	fs.StringVar(&s.Subject, "subject", "", "publish: the subject, e.g. tool.call.<agent>.<server>.<tool> (the scheduler's NATS user must be allowed to publish it)")
	payload := fs.String("payload", "", "message body, JSON (for a tool call: its arguments)")
	missed := fs.String("missed", "skip", "ticks missed while every scheduler was down: skip, or once (fire once on return)")
	timeout := fs.Duration("timeout", 0, "publish to tool.call: the call's deadline (default 5m)")
	hdrs := pairFlags{}
	fs.Var(hdrs, "header", "extra header Name=value (repeatable)")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one schedule name, got %d arguments", fs.NArg())
	}
	s.Name = fs.Arg(0)
	s.Kind = scheduler.Kind(*kind)
	s.Missed = scheduler.Missed(*missed)
	s.Timeout = subjects.Duration(*timeout)
	if len(hdrs) > 0 {
		s.Headers = hdrs
	}
	if *payload != "" {
		s.Payload = json.RawMessage(*payload)
	}
	if err := s.Validate(); err != nil {
		return usagef("%v", err)
	}
	nc, js, err := conn.connect("toolbus-schedules", zerolog.Nop())
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := scheduler.Put(ctx, js, s); err != nil {
		return err
	}
	next, _ := s.Next(time.Now())
	fmt.Printf("schedule %q stored: %s → %s, next run %s\n", s.Name, s.Spec, s.Target(), fmtTime(next, s.TZ))
	return nil
}

func schedulesList(ctx context.Context, c *command, args []string) error {
	fs := newFlags(c)
	conn := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	nc, js, err := conn.connect("toolbus-schedules", zerolog.Nop())
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
	if *asJSON {
		return printJSON(struct {
			Leader    *scheduler.LeaderInfo `json:"leader"`
			Schedules []scheduler.Info      `json:"schedules"`
		}{leader, infos})
	}
	fmt.Println(leaderLine(leader, now))
	if len(infos) == 0 {
		fmt.Println("no schedules (config schedules appear here once they have fired)")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
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

func schedulesRm(ctx context.Context, c *command, args []string) error {
	fs := newFlags(c)
	conn := addConnFlags(fs)
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one schedule name, got %d arguments", fs.NArg())
	}
	nc, js, err := conn.connect("toolbus-schedules", zerolog.Nop())
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := scheduler.Delete(ctx, js, fs.Arg(0)); err != nil {
		if errors.Is(err, scheduler.ErrNotFound) {
			return fmt.Errorf("%w (schedules from a config file are removed by editing the file)", err)
		}
		return err
	}
	fmt.Printf("schedule %q removed\n", fs.Arg(0))
	return nil
}

// schedulesRun runs one scheduler replica: the config file's schedules and
// the bucket's. Run several for availability: they elect a leader, which
// alone publishes, so each tick fires once.
func schedulesRun(ctx context.Context, c *command, args []string) error {
	fs := newFlags(c)
	conn := addConnFlags(fs)
	configPath := fs.String("config", "", "config file with a schedules: section (default ./toolbus.yaml if present)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	name := fs.String("name", "", "replica name, in logs and in schedules list while it leads (default host-pid)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(*logLevel)
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	var scheds []scheduler.Schedule
	if err := config.Decode("schedules", cfg.Schedules, &scheds); err != nil {
		return fmt.Errorf("%s: %w", cfg.Path, err)
	}
	nc, js, err := conn.connect("toolbus-scheduler", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	s, err := scheduler.New(js, log, scheduler.WithSchedules(scheds), scheduler.WithName(*name))
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return s.Run(ctx)
}

// parseInterspersed is parseArgs that leaves the positional arguments in
// fs.Args(), for commands written against the flag package alone.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	return fs.Parse(append([]string{"--"}, pos...))
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
