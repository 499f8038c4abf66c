package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/migrate"
)

func newMigrateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the replicator's bookkeeping schema and the target schema (embedded migrations)",
		Long: `Apply every pending migration embedded in this binary: the replicator's own
bookkeeping schema (cdc) and the target schema of the escrow tables. Safe to
run twice and from two replicas at once (an advisory lock serialises them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(config.RolePostgres)
			if err != nil {
				return err
			}
			res, err := migrate.Up(cmd.Context(), cfg.Postgres.URL, log)
			if err != nil {
				return err
			}
			if len(res) == 0 {
				fmt.Fprintln(g.stdout, "schema is up to date")
			}
			for _, r := range res {
				fmt.Fprintf(g.stdout, "applied %05d %s (%s)\n", r.Version, r.Name, r.Duration.Round(1e6))
			}
			return nil
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show applied and pending migrations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
		},
	})
	return cmd
}
