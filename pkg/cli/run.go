package cli

import (
	"github.com/spf13/cobra"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
)

func newRunCmd(g *globals, use string, role config.Role, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

Runs until SIGINT or SIGTERM, then drains in-flight work and exits 0. Exits
non-zero when a part fails for good: a system unreachable at start-up, a
resume point that fell off the oplog, transforms that do not match the live
Postgres schema.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.load(role)
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // stderr
			return app.Run(cmd.Context(), cfg, role, log, app.Options{})
		},
	}
}
