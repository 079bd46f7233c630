package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/toolbus-dev/toolbus/client"
	"github.com/toolbus-dev/toolbus/subjects"
)

func newResultCmd(a *app) *cobra.Command {
	var (
		agent  string
		asJSON bool
		wait   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "result <call-id>",
		Short: "print the stored result of a call (one sent with call --detach, or interrupted)",
		Long: `Print the stored result of a call by its id, as 'toolbus call' prints it, with
the same exit status. Results are kept in TOOL_RESULTS for nats.result_max_age
(24h unless set); an agent reads only its own.`,
		Example: `  toolbus result Qx3b9kR2TgWmV7nYp0aLsA
  toolbus result -- -Zx3b9kR2TgWmV7nYp0aLs             # an id that starts with "-" goes after --
  toolbus result --wait 5m --json -- "$(toolbus call --detach demo sleep '{"ms":60000}' --timeout 5m)"`,
		Args: wantArgs(1, 1, "<call-id>"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			id := pos[0]
			if err := subjects.ValidateCallID(id); err != nil {
				return usagef("%v", err)
			}
			nc, _, who, err := a.connectAs("toolbus-result", agent, zerolog.Nop())
			if err != nil {
				return err
			}
			defer nc.Close()
			cl, err := client.New(nc, client.WithAgent(who), client.WithLogger(newLogger(cmd.ErrOrStderr(), "warn")))
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx := cmd.Context()
			deadline := time.Now().Add(wait)
			var res *subjects.Result
			for {
				res, err = cl.Result(ctx, id)
				if !errors.Is(err, jetstream.ErrMsgNotFound) || !time.Now().Before(deadline) {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("no result for call %s of agent %s yet: it is queued or running (--wait to wait for it), was never accepted, or is older than TOOL_RESULTS keeps results", id, who)
			}
			if err != nil {
				return err
			}
			if asJSON {
				out, _ := json.MarshalIndent(res, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(out))
			} else {
				printResult(cmd.OutOrStdout(), cmd.ErrOrStderr(), res)
			}
			if res.Status != subjects.StatusOK {
				return exitError{code: 1}
			}
			return nil
		},
	}
	// Call ids are base64url: one in 64 starts with "-" and reads as flags.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usagef("%v (a call id that starts with \"-\" goes after --: toolbus result -- <id>)", err)
	})
	fs := cmd.Flags()
	fs.StringVar(&agent, "agent", "", "the agent whose call it is (default: the NATS user, else \"default\")")
	envFlag(fs, "agent", "TOOLBUS_AGENT")
	fs.BoolVar(&asJSON, "json", false, "print the whole result as JSON (for scripts)")
	fs.DurationVar(&wait, "wait", 0, "wait up to this long for the result to be stored")
	return cmd
}

// resultCommand is the command that reads call id's result.
func resultCommand(id string) string {
	if strings.HasPrefix(id, "-") {
		return "toolbus result -- " + id
	}
	return "toolbus result " + id
}
