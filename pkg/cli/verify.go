package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/verify"
)

// verifyFlags are the flags of cdc verify.
type verifyFlags struct {
	colls          []string
	sample         int
	asJSON         bool
	recheckWait    time.Duration
	chunkSize      int
	examples       int
	connectTimeout time.Duration
	queryTimeout   time.Duration
	progressAt     string
}

func newVerifyCmd(g *globals) *cobra.Command {
	var fl verifyFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove that PostgreSQL holds exactly what MongoDB holds; exit 1 on any difference or error",
		Long: `Verify compares every replicated collection (or --collections) in MongoDB with
its rows in PostgreSQL and runs, per collection:

  count              countDocuments against the table's rows
  idmap_mongo_to_pg  every _id has an id_map entry and its row
  idmap_pg_to_mongo  every row traces through id_map to a live document
  document_diff      every document (or --sample N of them) compared column by
                     column with its row, child tables included; money, ids and
                     times are decoded by verify itself (Decimal128 from its
                     bits, ObjectIds, dates to the millisecond in UTC) and
                     compared with Postgres's text, never through the sink's
                     conversion, so a converter bug is a difference
  money_sums         per numeric column, in total and per status: Mongo side
                     summed exactly in Go, Postgres side sum(col)::text
  fk_integrity       every reference points at an existing row
  idmap_stray        no id_map entry without a live document, a tombstone
                     or a recorded version
  enum_completeness  every value of an enum field in Mongo has a mapping and a
                     Postgres label

and, when payments and fundsLedger are verified, the ledger reconciliation
(ledger_*: settled payments have their entries, no double release or refund,
no over-disbursement, escrow state equals the last entry's, no entry without
its payment).

It only reads. While the replicator runs, a difference is reported only if
it persists once the sink has caught up with the Mongo read (up to
--recheck-wait; with sink.lanes, once every lane has). Exit code 0 only when every check ran and passed; any
difference, any error and any unreachable database exit 1 and say which.
--json prints the machine-readable report (format version 1) on stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.runVerify(cmd, &fl) },
	}
	f := cmd.Flags()
	f.StringSliceVar(&fl.colls, "collections", nil, "collections to verify (comma-separated; default: every replicated collection)")
	f.IntVar(&fl.sample, "sample", 0, "compare a strided random sample of about N documents per collection instead of all (default: all)")
	f.BoolVar(&fl.asJSON, "json", false, "print the report as JSON (format version 1) on stdout")
	f.DurationVar(&fl.recheckWait, "recheck-wait", 30*time.Second, "how long a difference may wait for the sink to catch up before it is reported")
	f.IntVar(&fl.chunkSize, "chunk-size", 1000, "documents read and compared at a time (bounds memory)")
	f.IntVar(&fl.examples, "examples", 10, "example mismatches kept per check (counts are always complete)")
	f.DurationVar(&fl.connectTimeout, "connect-timeout", app.StartupTimeout, "how long each database may take to answer at start")
	f.DurationVar(&fl.queryTimeout, "query-timeout", 5*time.Minute, "bound on each database operation")
	f.StringVar(&fl.progressAt, "progress", "auto", "progress display: auto (bar on a terminal, log lines otherwise), bar, log, none")
	return cmd
}

// runVerify holds cdc verify's work, so that newVerifyCmd reads as its
// help text and flags.
func (g *globals) runVerify(cmd *cobra.Command, fl *verifyFlags) error {
	ctx := cmd.Context()
	s, err := g.setup(config.RoleTailer|config.RolePostgres, loadReplicated)
	if err != nil {
		return err
	}
	// Bounded: a MongoDB that went away must not hold the exit.
	s.mongoCloseTimeout = 5 * time.Second
	defer s.close(ctx)
	cfg, log := &s.cfg, s.log
	todo, err := pickCollections(fl.colls, s.replicated)
	if err != nil {
		return err
	}
	vcfg := verify.Config{
		Database: cfg.Mongo.Database, Collections: todo, Replicated: s.replicated, Consumer: cfg.Sink.Consumer,
		LaneConsumers: app.LaneConsumers(cfg),
		Sample:        fl.sample, ChunkSize: fl.chunkSize, RecheckWait: fl.recheckWait, Examples: fl.examples, QueryTimeout: fl.queryTimeout,
	}
	if err := vcfg.Validate(); err != nil {
		return &usageError{err}
	}
	if fl.connectTimeout <= 0 {
		return &usageError{fmt.Errorf("--connect-timeout must be positive, got %s", fl.connectTimeout)}
	}
	prog, err := g.progressDisplay(fl.progressAt, "verify", log)
	if err != nil {
		return err
	}

	// Each database must answer within --connect-timeout, or the run
	// fails naming it: never a pass.
	if err := s.connect(ctx, systems{mongo: true, timeout: fl.connectTimeout}); err != nil {
		return g.verifyAborted(fl.asJSON, &vcfg, &verify.UnreachableError{System: verify.SystemMongo, Err: err})
	}
	if err := s.connect(ctx, systems{pgConns: 4, timeout: fl.connectTimeout}); err != nil {
		return g.verifyAborted(fl.asJSON, &vcfg, &verify.UnreachableError{System: verify.SystemPostgres, Err: err})
	}

	v, err := verify.New(s.client, s.pool, s.set, vcfg, log.Named("verify"), prog)
	if err != nil {
		return g.verifyAborted(fl.asJSON, &vcfg, err)
	}
	rep, runErr := v.Run(ctx)
	if fl.asJSON {
		err = rep.WriteJSON(g.stdout)
	} else {
		err = rep.WriteText(g.stdout)
	}
	if err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	log.Info("verify finished", zap.Bool("ok", rep.OK), zap.Int("checks", rep.Totals.Checks),
		zap.Int("failed", rep.Totals.Failed), zap.Int("errors", rep.Totals.Errors), zap.Int64("mismatches", rep.Totals.Mismatches))
	switch {
	case runErr != nil:
		return fmt.Errorf("verify did not complete: %w", runErr)
	case !rep.OK:
		return fmt.Errorf("verify failed: %s", rep.Summary())
	}
	return nil
}

// verifyAborted reports a run that could not start (with --json, as a
// report that is not OK) and returns the error for the exit status.
func (g *globals) verifyAborted(asJSON bool, vcfg *verify.Config, err error) error {
	err = g.scrubber().Error(err) // the report quotes it on stdout
	if asJSON {
		rep := verify.Aborted(vcfg, err)
		if werr := rep.WriteJSON(g.stdout); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return fmt.Errorf("verify did not run: %w", err)
}
