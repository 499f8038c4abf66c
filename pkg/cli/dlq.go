package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/dlq"
)

func newDLQCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, show, retry or drop dead letters (cdc.dead_letters)",
		Long: `Dead letters are events the sink could not apply: a transform rejection
(with the field and the reason), a constraint violation on the event's own
data, an update or delete of an append-only ledger document, or an event
parked behind an earlier dead letter of the same document.

retry re-applies the selected entries in stream order with the live sink's
rules (version guard, transactions whole); drop closes them without
applying. Both accept --dry-run and are safe to run twice.`,
	}
	var (
		f      dlq.Filter
		ids    []string
		asJSON bool
		dryRun bool
	)
	addFilter := func(c *cobra.Command) {
		c.Flags().StringSliceVar(&ids, "id", nil, "dead letter ids (repeatable or comma-separated)")
		c.Flags().StringVar(&f.Collection, "collection", "", "only this collection")
		c.Flags().StringVar(&f.DocKey, "doc", "", "only this document id (24 hex digits for an ObjectId)")
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	}
	parseIDs := func() error {
		for _, s := range ids {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return &usageError{fmt.Errorf("--id %q is not a number", s)}
			}
			f.IDs = append(f.IDs, n)
		}
		return nil
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters (open ones by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parseIDs(); err != nil {
				return err
			}
			cfg, _, err := g.load(config.RolePostgres)
			if err != nil {
				return err
			}
			pool, err := app.ConnectPostgres(cmd.Context(), cfg.Postgres.URL, 2)
			if err != nil {
				return err
			}
			defer pool.Close()
			if f.Status == "any" {
				f.Status = ""
			}
			es, err := dlq.List(cmd.Context(), pool, f)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(g.stdout).Encode(es)
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tCLASS\tSTATUS\tCOLLECTION\tDOCUMENT\tSEQ\tATTEMPTS\tLAST SEEN\tFIELD\tREASON")
			for _, e := range es {
				reason := e.Reason
				if len(reason) > 80 {
					reason = reason[:77] + "..."
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", e.ID, e.Class, e.Status, e.Collection, e.DocKey,
					e.StreamSeq, e.Attempts, e.LastSeen.UTC().Format("2006-01-02 15:04:05Z"), e.Field, reason)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%d dead letters\n", len(es))
			return nil
		},
	}
	addFilter(list)
	list.Flags().StringVar(&f.Status, "status", "open", "open, retried, dropped or any")
	list.Flags().IntVar(&f.Limit, "limit", 0, "at most this many (0: all)")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one dead letter with its event (canonical Extended JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return &usageError{fmt.Errorf("%q is not a dead letter id", args[0])}
			}
			cfg, _, err := g.load(config.RolePostgres)
			if err != nil {
				return err
			}
			pool, err := app.ConnectPostgres(cmd.Context(), cfg.Postgres.URL, 2)
			if err != nil {
				return err
			}
			defer pool.Close()
			e, err := dlq.Get(cmd.Context(), pool, id)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(e)
		},
	}

	act := func(use, short string, run func(cmd *cobra.Command) (dlq.Report, error)) *cobra.Command {
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := parseIDs(); err != nil {
					return err
				}
				rep, err := run(cmd)
				if errors.Is(err, dlq.ErrNoFilter) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(g.stdout).Encode(rep)
				}
				verb := map[bool]string{true: "would act on", false: "acted on"}[dryRun]
				fmt.Fprintf(g.stdout, "%s %d dead letters: applied %d, skipped %d (already newer), dead-lettered again %d, dropped %d, incomplete transactions %d\n",
					verb, rep.Selected, rep.Applied, rep.Skipped, rep.DeadLettered, rep.Dropped, rep.Incomplete)
				if rep.DeadLettered > 0 || rep.Incomplete > 0 {
					return fmt.Errorf("%d events failed again and %d belong to incomplete transactions; see cdc dlq list", rep.DeadLettered, rep.Incomplete)
				}
				return nil
			},
		}
		addFilter(c)
		c.Flags().BoolVar(&f.All, "all", false, "every open dead letter")
		c.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be done, change nothing")
		return c
	}
	retry := act("retry", "Re-apply dead letters in stream order (open ones)", func(cmd *cobra.Command) (dlq.Report, error) {
		cfg, _, err := g.load(config.RolePostgres)
		if err != nil {
			return dlq.Report{}, err
		}
		set, err := app.LoadTransforms(&cfg)
		if err != nil {
			return dlq.Report{}, err
		}
		pool, err := app.ConnectPostgres(cmd.Context(), cfg.Postgres.URL, 2)
		if err != nil {
			return dlq.Report{}, err
		}
		defer pool.Close()
		return dlq.Retry(cmd.Context(), pool, set, f, dryRun)
	})
	drop := act("drop", "Close dead letters without applying them", func(cmd *cobra.Command) (dlq.Report, error) {
		cfg, _, err := g.load(config.RolePostgres)
		if err != nil {
			return dlq.Report{}, err
		}
		pool, err := app.ConnectPostgres(cmd.Context(), cfg.Postgres.URL, 2)
		if err != nil {
			return dlq.Report{}, err
		}
		defer pool.Close()
		return dlq.Drop(cmd.Context(), pool, f, dryRun)
	})
	cmd.AddCommand(list, show, retry, drop)
	return cmd
}
