package main

import "github.com/spf13/cobra"

func newWorkerCmd(a *app) *cobra.Command {
	var rf *runFlags
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "run a worker against an existing NATS (start as many as you like; they share the load)",
		Long: `Run a worker against an existing NATS: it consumes tool calls from the shared
durable consumer, runs them against the registered MCP servers and is a sync
replica. Start as many as you like; they share the load. With --config, the
file's servers are registered at start; SIGHUP re-reads the file (servers and
worker.concurrency).`,
		Example: `  toolbus worker --nats-url nats://nats1:4222 --concurrency 128
  toolbus worker --context prod --config toolbus.yaml --name w1
  toolbus worker --nats-url nats://nats1:4222 --metrics :9090`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, cfg, ccfg, err := rf.start(a, cmd)
			if err != nil {
				return err
			}
			nc, _, err := dial(ccfg, "toolbus-worker", log)
			if err != nil {
				return err
			}
			defer nc.Close()
			return runStack(cmd.Context(), nc, cfg, rf, log, false)
		},
	}
	rf = addRunFlags(cmd.Flags())
	return cmd
}
