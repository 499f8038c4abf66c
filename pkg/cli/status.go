package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/amanat/cdc/pkg/status"
)

func newStatusCmd(g *globals) *cobra.Command {
	var (
		asJSON   bool
		noCounts bool
		timeout  time.Duration
		maxLag   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Positions, lag, pending events, dead letters and counts, from the stored state",
		Long: `status reads the replicator's stored state and prints it: the tailer's
checkpoint (resume token, cluster time, age, events) and its oplog headroom,
the change and dead-letter streams (messages, bytes, first and last
sequence), the sink's consumer (pending, acknowledgement floor), the sink's
applied position in cdc.sink_positions, the lag, open dead letters by
collection and class, and per-collection counts (rows per table,
cdc.doc_versions, MongoDB countDocuments).

Lag is how far PostgreSQL trails the stream: events = the stream's last
sequence minus the sink's applied floor; seconds = now minus the cluster
time of the newest applied event while events are pending (0 when nothing
is pending: an idle source is not lag).

It works with the daemon running or stopped. With nats.url it connects to
that server. With the embedded server it connects to the daemon's server at
nats.embedded.host:port; if nothing listens there and the daemon's http.addr
does not answer, the daemon is down and status starts a temporary embedded
server on the store directory to read it, then stops it.

One unreachable system does not hide the others: its sections say
"unknown: <error>". The exit code is 0 only when every system was reached
and nothing needs an operator (the problems are listed at the end, and in
"problems" with --json); otherwise 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return &usageError{errors.New("--timeout must be positive")}
			}
			cfg, _, err := g.load(0)
			if err != nil {
				return err
			}
			rep := status.Run(cmd.Context(), &cfg, status.Options{Timeout: timeout, Counts: !noCounts, MaxLag: maxLag})
			if asJSON {
				err = status.WriteJSON(g.stdout, rep)
			} else {
				err = status.WriteText(g.stdout, rep)
			}
			if err != nil {
				return err
			}
			if !rep.Healthy {
				return fmt.Errorf("status: %d problems; the first: %s", len(rep.Problems), rep.Problems[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (field \"v\" is the format version)")
	cmd.Flags().BoolVar(&noCounts, "no-counts", false, "skip the per-collection counts (count(*) and countDocuments are slow on large data)")
	cmd.Flags().DurationVar(&timeout, "timeout", status.DefaultTimeout, "bound on each connection attempt and each read")
	cmd.Flags().DurationVar(&maxLag, "max-lag", 0, "report lag seconds above this duration as a problem (exit 1); 0 never")
	return cmd
}
