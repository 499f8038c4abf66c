package cli

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/state"
)

func newPositionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "position",
		Short: "Show or move the sink's recorded position (the recovery for a re-created stream or a stream gap)",
		Long: `The sink records, in cdc.sink_positions, the stream sequence below which every
event is resolved, and which stream (its creation time) that sequence
belongs to. When the stream is re-created, restored or loses messages the
sink never applied, the sink stops and names the recovery:

  1. replay what the stream lacks (cdc replay oplog --from <cluster time>,
     or cdc snapshot), then
  2. cdc position adopt            accept the stream as it is now and apply it
                                   from its first message (the version guard
                                   skips what is applied already), or
     cdc position set --seq N      move the position to N (past a gap).

Both take the consumer's fence: they refuse while a sink runs.`,
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the recorded position, its stream and the fence holder",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return g.runPositionShow(cmd) },
	}
	var seq string
	move := func(use, short string, withSeq bool) *cobra.Command {
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return g.runPositionMove(cmd, use, withSeq, seq) },
		}
		if withSeq {
			c.Flags().StringVar(&seq, "seq", "", "the new position: every stream message at or below it counts as resolved (required)")
			_ = c.MarkFlagRequired("seq")
		}
		return c
	}
	cmd.AddCommand(show,
		move("adopt", "Accept the stream as it is now: the sink applies it from its first message", false),
		move("set", "Set the position to --seq on the current stream (past a gap that was replayed)", true))
	return cmd
}

// runPositionShow holds cdc position show's work, so that newPositionCmd
// reads as its help text and flags.
func (g *globals) runPositionShow(cmd *cobra.Command) error {
	s, err := g.setup(config.RoleSink|config.RolePostgres, loadConfig)
	if err != nil {
		return err
	}
	defer s.close(cmd.Context())
	if err := s.connect(cmd.Context(), systems{pgConns: 1}); err != nil {
		return err
	}
	cfg := &s.cfg
	p, ok, err := state.ReadPosition(cmd.Context(), s.pool, cfg.Sink.Consumer)
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(g.stdout, "consumer %s has no position yet\n", cfg.Sink.Consumer)
		return nil
	}
	printPosition(g, "position", p)
	return nil
}

// runPositionMove is the work of cdc position adopt (withSeq false) and
// cdc position set (withSeq, to --seq): one repositioning, named by use in
// the position's history.
func (g *globals) runPositionMove(cmd *cobra.Command, use string, withSeq bool, seq string) error {
	var to *uint64
	if withSeq {
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil {
			return &usageError{fmt.Errorf("--seq: %w", err)}
		}
		to = &n
	}
	s, err := g.setup(config.RoleSink|config.RolePostgres, loadConfig)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	defer s.close(ctx)
	if err := s.connect(ctx, systems{pgConns: 1, bus: true}); err != nil {
		return err
	}
	cfg := &s.cfg
	before, after, err := sink.Reposition(ctx, s.pool, s.bus.JS, cfg.Sink.Consumer, cfg.NATS.Stream, "cdc position "+use, to)
	if errors.Is(err, state.ErrHeld) {
		return fmt.Errorf("%w: stop the sink first (the position moves only while no sink applies)", err)
	}
	if err != nil {
		return err
	}
	printPosition(g, "before", before)
	printPosition(g, "after", after)
	return nil
}

func printPosition(g *globals, label string, p state.Position) {
	created := "(not recorded)"
	if !p.StreamCreated.IsZero() {
		created = p.StreamCreated.Format("2006-01-02T15:04:05.000000Z07:00")
	}
	fmt.Fprintf(g.stdout, "%-8s consumer %s: sequence %d of stream %s created %s; last applied cluster time %s; fence epoch %d held by %q\n",
		label, p.Consumer, p.Seq, p.Stream, created, p.ClusterTime, p.Epoch, p.Owner)
}
