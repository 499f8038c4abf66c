package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/progress"
	"github.com/amanat/cdc/pkg/replay"
	"github.com/amanat/cdc/pkg/report"
	"github.com/amanat/cdc/pkg/snapshot"
)

// operatorFlags are the flags every snapshot and replay command shares.
type operatorFlags struct {
	dryRun bool
	yes    []string
}

func (o *operatorFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "say what would be done; write nothing")
	cmd.Flags().StringArrayVar(&o.yes, "yes", nil,
		"confirm a PostgreSQL target host that is not in snapshot.allowed_targets (name it exactly; repeat for several hosts)")
}

// guard refuses (exit code 2) a target neither allowed nor confirmed. A
// dry run only reports the outcome.
func (o *operatorFlags) guard(cfg *config.Config, rep *report.Report) error {
	targets, err := replay.CheckTarget(cfg.Postgres.URL, cfg.Snapshot.AllowedTargets, o.yes)
	if err != nil && !errors.Is(err, replay.ErrTargetRefused) {
		return &usageError{err}
	}
	if err != nil {
		if o.dryRun {
			rep.Note("guard: %v (a real run would refuse)", err)
			return nil
		}
		return &usageError{err}
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.String()
	}
	rep.Note("target PostgreSQL %v: allowed", names)
	return nil
}

// finish prints the report and turns its outcome into the exit status.
func (g *globals) finish(rep *report.Report, err error) error {
	if werr := rep.Write(g.stdout); werr != nil && err == nil {
		err = werr
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted: what was done is saved; run the same command again to continue")
	case err != nil:
		return err
	case rep.Failed():
		return fmt.Errorf("%s finished with %d errors (see the report above)", rep.Command, rep.Errors)
	}
	return nil
}

// openBus connects an operator command to the bus: nats.url, or the
// embedded server of a running replicator (nats.embedded.host:port), or,
// when none answers there, an embedded server of its own on the same store
// (the replicator is down, so nothing else uses it).
func openBus(ctx context.Context, cfg config.Config, log *zap.Logger) (*app.Bus, error) {
	if cfg.NATS.URL == "" && cfg.NATS.Embedded.Port <= 0 {
		// A replicator may be running with its embedded server on a port
		// nobody knows; a second server on the same store must not start.
		return nil, &usageError{fmt.Errorf("nats.url is empty and nats.embedded.port is %d: cannot find a running replicator's embedded server; "+
			"set nats.url (or a fixed nats.embedded.port)", cfg.NATS.Embedded.Port)}
	}
	if cfg.NATS.URL == "" {
		url := "nats://" + net.JoinHostPort(cfg.NATS.Embedded.Host, strconv.Itoa(cfg.NATS.Embedded.Port))
		opts, err := bus.ClientOptions(cfg.NATS)
		if err != nil {
			return nil, err
		}
		if nc, err := nats.Connect(url, append(opts, nats.Timeout(2*time.Second))...); err == nil {
			nc.Close()
			cfg.NATS.URL = url
		}
	}
	return app.OpenBus(ctx, &cfg, "cdc-operator", 0, log)
}

// progressDisplay resolves --progress: auto is a bar on a terminal
// (stderr; stdout carries reports) and log lines (about what: "snapshot",
// "verify") otherwise.
func (g *globals) progressDisplay(mode, what string, log *zap.Logger) (progress.Display, error) {
	switch mode {
	case "auto":
		if f, ok := g.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return progress.NewBar(g.stderr), nil
		}
		return progress.NewLog(log, 10*time.Second, what), nil
	case "bar":
		return progress.NewBar(g.stderr), nil
	case "log":
		return progress.NewLog(log, 10*time.Second, what), nil
	case "none":
		return progress.Nop{}, nil
	}
	return nil, &usageError{fmt.Errorf("--progress must be auto, bar, log or none, got %q", mode)}
}

// pickCollections returns the requested collections, each of which must
// be replicated, or all replicated ones.
func pickCollections(requested, replicated []string) ([]string, error) {
	if len(requested) == 0 {
		return replicated, nil
	}
	for _, c := range requested {
		if !slices.Contains(replicated, c) {
			return nil, &usageError{fmt.Errorf("collection %q is not replicated (replicated: %v)", c, replicated)}
		}
	}
	return requested, nil
}

func newSnapshotCmd(g *globals) *cobra.Command {
	var (
		op         operatorFlags
		colls      []string
		restart    bool
		noWait     bool
		batchSize  int
		progressAt string
	)
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Load (or re-load) collections with a consistent hand-off to streaming; resumable",
		Long: `Snapshot records a start time T (the cluster time of a majority read), makes
sure the tailer streams every change from T on (it creates the tailer's
checkpoint at T when there is none, and resets one that fell off the oplog
when every replicated collection is snapshotted), then scans each collection
in _id order, parents first, and publishes every document as a snapshot
event at T. The version guard makes the overlap with streaming harmless.

Progress is saved after every batch: after a crash or Ctrl-C the same command
resumes where it stopped, with the same T. --restart discards an unfinished
snapshot. It works while the replicator runs; collections that reference
others wait for the tailer to pass each batch's read time, so the replicator
must be running (or pass --no-wait-tailer).

The PostgreSQL target (postgres.url) must be listed in
snapshot.allowed_targets or confirmed with --yes <host>, or the command
refuses with exit code 2.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := g.setup(config.RoleAll, loadReplicated)
			if err != nil {
				return err
			}
			defer s.close(ctx)
			cfg, log := &s.cfg, s.log
			disp, err := g.progressDisplay(progressAt, "snapshot", log)
			if err != nil {
				return err
			}
			todo, err := pickCollections(colls, s.replicated)
			if err != nil {
				return err
			}
			rep := &report.Report{Command: "snapshot", DryRun: op.dryRun}
			if err := op.guard(cfg, rep); err != nil {
				return err
			}
			if batchSize <= 0 {
				batchSize = cfg.Snapshot.BatchSize
			}
			wait := cfg.Snapshot.TailerWait
			if noWait {
				wait = 0
			}
			start, _ := config.ParseStartAt(cfg.Tailer.StartAt)
			if err := s.connect(ctx, systems{mongo: true, bus: true}); err != nil {
				return err
			}
			r := snapshot.New(s.client, s.bus.JS, s.set, snapshot.Config{
				Database: cfg.Mongo.Database, Collections: todo, Replicated: s.replicated, BatchSize: batchSize,
				Streams: s.bus.Streams, ProgressBucket: cfg.Snapshot.ProgressBucket, TailerStart: start, TailerWait: wait,
				HeadroomWarning: cfg.Oplog.HeadroomWarning, Restart: restart, DryRun: op.dryRun,
			}, log.Named("snapshot"), disp)
			out, err := r.Run(ctx)
			out.Notes = append(rep.Notes, out.Notes...)
			return g.finish(out, err)
		},
	}
	op.add(cmd)
	cmd.Flags().StringSliceVar(&colls, "collections", nil, "collections to snapshot (comma-separated; default: every replicated collection)")
	cmd.Flags().BoolVar(&restart, "restart", false, "discard an unfinished snapshot and start a new one")
	cmd.Flags().BoolVar(&noWait, "no-wait-tailer", false, "do not wait for the tailer before publishing batches of referencing collections")
	cmd.Flags().IntVar(&batchSize, "batch-size", 0, "documents per find and progress record (default snapshot.batch_size)")
	cmd.Flags().StringVar(&progressAt, "progress", "auto", "progress display: auto (bar on a terminal, log lines otherwise), bar, log, none")
	return cmd
}
