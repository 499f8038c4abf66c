package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/migrate"
)

// migrateFlags are the flags of cdc migrate.
type migrateFlags struct {
	planOnly, widen bool
	lockTimeout     time.Duration
}

func newMigrateCmd(g *globals) *cobra.Command {
	var fl migrateFlags
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the replicator's bookkeeping schema and the target schema (embedded migrations); adopt an existing target",
		Long: `Apply every pending migration embedded in this binary: the replicator's own
bookkeeping schema (cdc) and the target schema of the escrow tables. Safe to
run twice and from two replicas at once (an advisory lock serialises them).

A database that already has the application's tables (created by the
application's own migrations) is adopted instead: cdc migrate adds only what
the migrations would have made and the tables lack (CHECK and foreign keys
NOT VALID then validated, indexes CONCURRENTLY, NOT NULL through a validated
CHECK, the ledger's append-only triggers), records those migrations as
applied, then runs the later ones. It refuses, naming every difference and
changing nothing, where a table cannot be adopted safely: a column type that
would lose money or cannot be converted, a column a mapping writes that the
table lacks, an object of the migrations' name with another definition.
Run with --plan first: it prints every step with its SQL and changes nothing.
See docs/adopt.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.runMigrate(cmd, &fl) },
	}
	cmd.Flags().BoolVar(&fl.planOnly, "plan", false, "print what migrate would do (an adoption's every step with its SQL) and change nothing; exit 1 if the adoption would be refused")
	cmd.Flags().BoolVar(&fl.widen, "widen", false, "when adopting, convert narrower columns to the migrations' types without loss (numeric(18,8) -> numeric(38,18), integer -> bigint); rewrites those tables under an ACCESS EXCLUSIVE lock")
	cmd.Flags().DurationVar(&fl.lockTimeout, "lock-timeout", migrate.DefaultLockTimeout, "when adopting, how long a step that blocks writes to a table waits for its lock before failing (run again to resume)")
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show applied and pending migrations",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return g.runMigrateStatus(cmd) },
	})
	return cmd
}

// runMigrate holds cdc migrate's work, so that newMigrateCmd reads as its
// help text and flags.
func (g *globals) runMigrate(cmd *cobra.Command, fl *migrateFlags) error {
	s, err := g.setup(config.RolePostgres, loadMappings)
	if err != nil {
		return err
	}
	defer s.close(cmd.Context())
	cfg, log := &s.cfg, s.log
	opts := migrate.AdoptOptions{Mappings: s.set, Widen: fl.widen, LockTimeout: fl.lockTimeout}
	if fl.planOnly {
		pl, err := migrate.PlanUp(cmd.Context(), cfg.Postgres.URL, opts)
		if err != nil {
			return err
		}
		if err := pl.Write(g.stdout); err != nil {
			return err
		}
		if len(pl.Differences) > 0 {
			return fmt.Errorf("%w: %d difference(s), listed in the plan above", migrate.ErrAdoptRefused, len(pl.Differences))
		}
		return nil
	}
	pl, res, err := migrate.UpAdopting(cmd.Context(), cfg.Postgres.URL, log, opts)
	if pl != nil && pl.Adopt {
		var se *migrate.StepError
		var me *migrate.MigrationError
		switch {
		case errors.As(err, &se):
			fmt.Fprintf(g.stdout, "adopting the existing tables: %d of %d steps done\n", se.Index-1, len(pl.Steps))
		case err == nil || errors.As(err, &me):
			fmt.Fprintf(g.stdout, "adopted the existing tables: %d steps done\n", len(pl.Steps))
		}
	}
	if err == nil && len(res) == 0 {
		fmt.Fprintln(g.stdout, "schema is up to date")
	}
	for _, r := range res {
		if r.Adopted {
			fmt.Fprintf(g.stdout, "recorded %05d %s (adopted: the steps above made its changes)\n", r.Version, r.Name)
			continue
		}
		fmt.Fprintf(g.stdout, "applied %05d %s (%s)\n", r.Version, r.Name, r.Duration.Round(1e6))
	}
	return err
}

// runMigrateStatus holds cdc migrate status' work, so that newMigrateCmd
// reads as its help text and flags.
func (g *globals) runMigrateStatus(cmd *cobra.Command) error {
	cfg, _, err := g.load(config.RolePostgres)
	if err != nil {
		return err
	}
	st, err := migrate.Status(cmd.Context(), cfg.Postgres.URL)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tNAME\tAPPLIED AT")
	pending := 0
	for _, s := range st {
		at := "pending"
		if !s.Pending {
			at = s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
		} else {
			pending++
		}
		fmt.Fprintf(w, "%05d\t%s\t%s\n", s.Version, s.Name, at)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%d migrations, %d pending\n", len(st), pending)
	return nil
}
