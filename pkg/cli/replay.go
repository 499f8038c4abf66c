package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/replay"
	"github.com/amanat/cdc/pkg/report"
	"github.com/amanat/cdc/pkg/transform"
)

func newReplayCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Close a gap: re-publish an oplog range, re-apply a stream range, or refresh documents by id",
		Long: `Replay closes a gap without double-applying anything: JetStream's dedup
window and the sink's version guard make every copy of an event that was
already applied change nothing.

  replay oplog   re-read a cluster-time range from MongoDB's oplog and publish it
  replay stream  re-apply events JetStream still retains directly to PostgreSQL
  replay ids     re-read documents (a list, a file, or pg_dualwrite_gaps) and
                 publish their current state

Rows deleted from PostgreSQL behind the replicator's back keep their version in
cdc.doc_versions, so re-applying their old events would be skipped: replay
reports them as errors, and --force (oplog, stream) forgets those versions so
the events restore the rows; replay ids always restores them.

Every command accepts --dry-run, is safe to run twice and while the replicator
runs, ends with a count report, and exits non-zero on any error. The
PostgreSQL target must be in snapshot.allowed_targets or confirmed with
--yes <host> (exit code 2 otherwise).`,
	}
	cmd.AddCommand(newReplayOplogCmd(g), newReplayStreamCmd(g), newReplayIDsCmd(g))
	return cmd
}

func newReplayOplogCmd(g *globals) *cobra.Command {
	var (
		op           operatorFlags
		from, to     string
		colls        []string
		force        bool
		applyTimeout time.Duration
		batchSize    int
	)
	cmd := &cobra.Command{
		Use:   "oplog --from <cluster time | RFC 3339> [--to ...]",
		Short: "Re-read a cluster-time range from the oplog and publish it (tailer ids: idempotent)",
		Long: `Re-read [--from, --to] (inclusive; --to defaults to now) through a change
stream opened at --from, and publish every change as the tailer does, with the
same event ids, so JetStream's dedup window and the version guard drop what
was already applied. A range the oplog no longer holds is refused, naming the
oldest time still available.

Times are cluster times "<seconds>.<increment>" or RFC 3339 (whole seconds:
--from from the second's start, --to through its end).

--force restores rows deleted from PostgreSQL behind the replicator's back:
their versions are forgotten, their events are published under ids suffixed
"~replay:<to>" (the original ids would be dropped as duplicates; every other
event keeps its id), and the command waits up to --apply-timeout for the
running sink to apply them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := g.setup(config.RoleAll, loadReplicated)
			if err != nil {
				return err
			}
			defer s.close(ctx)
			log := s.log
			if from == "" {
				return &usageError{fmt.Errorf("--from is required")}
			}
			f, err := replay.ParseClusterTime(from, false)
			if err != nil {
				return &usageError{err}
			}
			var t event.ClusterTime
			if to != "" && to != "now" {
				if t, err = replay.ParseClusterTime(to, true); err != nil {
					return &usageError{err}
				}
			}
			todo, err := pickCollections(colls, s.replicated)
			if err != nil {
				return err
			}
			rep := &report.Report{Command: "replay oplog", DryRun: op.dryRun}
			if err := op.guard(&s.cfg, rep); err != nil {
				return err
			}
			if err := s.connect(ctx, systems{mongo: true, pgConns: 2, bus: true}); err != nil {
				return err
			}
			if batchSize <= 0 {
				batchSize = s.cfg.Snapshot.BatchSize
			}
			out, err := replay.Oplog(ctx, s.client, s.bus.JS, s.pool, s.set, replay.OplogConfig{
				Database: s.cfg.Mongo.Database, Collections: todo, From: f, To: t, Streams: s.bus.Streams,
				BatchSize: batchSize, PreImages: s.cfg.Tailer.PreImages, Force: force, ApplyTimeout: applyTimeout, DryRun: op.dryRun,
			}, log.Named("replay"))
			out.Notes = append(rep.Notes, out.Notes...)
			return g.finish(out, err)
		},
	}
	op.add(cmd)
	cmd.Flags().StringVar(&from, "from", "", "start of the range: cluster time <seconds>.<increment> or RFC 3339 (required)")
	cmd.Flags().StringVar(&to, "to", "", "end of the range, inclusive (default: now)")
	cmd.Flags().StringSliceVar(&colls, "collections", nil, "collections to replay (default: every replicated collection)")
	cmd.Flags().BoolVar(&force, "force", false, "restore rows deleted behind the replicator's back (see above)")
	cmd.Flags().DurationVar(&applyTimeout, "apply-timeout", 2*time.Minute, "with --force: how long to wait for the sink to apply the restored rows")
	cmd.Flags().IntVar(&batchSize, "batch-size", 0, "events per publish batch (default snapshot.batch_size)")
	return cmd
}

// replayStreamFlags are the flags of cdc replay stream.
type replayStreamFlags struct {
	op             operatorFlags
	fromSeq, toSeq uint64
	since          string
	lane           string
	colls          []string
	force          bool
	batchSize      int
}

func newReplayStreamCmd(g *globals) *cobra.Command {
	var fl replayStreamFlags
	cmd := &cobra.Command{
		Use:   "stream [--lane L] --from-seq N [--to-seq M] | --since <time>",
		Short: "Re-apply events JetStream still retains to PostgreSQL (e.g. after a restore from backup)",
		Long: `Re-apply the events of the change stream from --from-seq (or stored since
--since, RFC 3339) through --to-seq (default: the last at the start) directly
to PostgreSQL, in Postgres transactions of up to --batch-size events (a Mongo
transaction is never split), with the live sink's rules: version guard,
transactions whole, dead letters. It reads through an ephemeral ordered
consumer and records no consumer position: the live sink's consumer and its
position are untouched, and it may run while the sink runs.

Events the version guard finds applied are skipped: after restoring PostgreSQL
from a backup, the events after the backup are applied and the rest skipped.
Rows deleted behind the replicator's back are reported as errors; --force
forgets their versions inside the transaction that re-applies their events.

With sink lanes (sink.lanes) every lane has a stream of its own,
<nats.stream>_<lane>, numbering its messages from 1: --from-seq and --to-seq
then need --lane, and replay that lane's stream only. --since without --lane
replays every lane, one after another, as one replay: events that waited for
a parent are retried once every lane was read (the parent may be in another
lane). With --collections, every lane is still read for those collections'
events (a Mongo transaction's events are all in the lane of its first event).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.runReplayStream(cmd, &fl) },
	}
	fl.op.add(cmd)
	cmd.Flags().StringVar(&fl.lane, "lane", "", "with sink.lanes: replay only this lane's stream (required with --from-seq and --to-seq)")
	cmd.Flags().Uint64Var(&fl.fromSeq, "from-seq", 0, "first stream sequence to re-apply (of the --lane's stream with lanes)")
	cmd.Flags().Uint64Var(&fl.toSeq, "to-seq", 0, "last stream sequence (default: the stream's last at the start)")
	cmd.Flags().StringVar(&fl.since, "since", "", "re-apply the messages stored since this RFC 3339 time (instead of --from-seq)")
	cmd.Flags().StringSliceVar(&fl.colls, "collections", nil, "only these collections (default: all)")
	cmd.Flags().BoolVar(&fl.force, "force", false, "restore rows deleted behind the replicator's back (forget their versions in the applying transaction)")
	cmd.Flags().IntVar(&fl.batchSize, "batch-size", 0, "events per Postgres transaction (default snapshot.batch_size)")
	return cmd
}

// runReplayStream holds cdc replay stream's work, so that
// newReplayStreamCmd reads as its help text and flags.
func (g *globals) runReplayStream(cmd *cobra.Command, fl *replayStreamFlags) error {
	ctx := cmd.Context()
	s, err := g.setup(config.RoleSink|config.RolePostgres, loadReplicated)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	log := s.log
	var sinceT time.Time
	switch {
	case fl.since != "" && fl.fromSeq > 0:
		return &usageError{fmt.Errorf("give --from-seq or --since, not both")}
	case fl.since != "":
		if sinceT, err = time.Parse(time.RFC3339Nano, fl.since); err != nil {
			return &usageError{fmt.Errorf("--since: %v", err)}
		}
	case fl.fromSeq == 0:
		return &usageError{fmt.Errorf("--from-seq or --since is required")}
	}
	if fl.toSeq > 0 && fl.fromSeq > fl.toSeq {
		return &usageError{fmt.Errorf("--from-seq %d is after --to-seq %d", fl.fromSeq, fl.toSeq)}
	}
	var todo []string
	if len(fl.colls) > 0 {
		if todo, err = pickCollections(fl.colls, s.set.Collections()); err != nil {
			return err
		}
	}
	scfg := replay.StreamConfig{
		Streams: bus.StreamsFromConfig(&s.cfg), Lane: fl.lane, Database: s.cfg.Mongo.Database, Collections: todo,
		FromSeq: fl.fromSeq, Since: sinceT, ToSeq: fl.toSeq, BatchSize: fl.batchSize, Force: fl.force,
		Unparked: s.cfg.Sink.UnparkedCollections, DryRun: fl.op.dryRun,
	}
	if _, err := replay.StreamLanes(scfg); err != nil {
		return &usageError{err}
	}
	rep := &report.Report{Command: "replay stream", DryRun: fl.op.dryRun}
	if err := fl.op.guard(&s.cfg, rep); err != nil {
		return err
	}
	if err := s.connect(ctx, systems{pgConns: 2}); err != nil {
		return err
	}
	if err := transform.CheckCatalog(ctx, s.pool, s.set); err != nil {
		return fmt.Errorf("refusing to apply: %w", err)
	}
	if err := s.connect(ctx, systems{bus: true}); err != nil {
		return err
	}
	if scfg.BatchSize <= 0 {
		scfg.BatchSize = s.cfg.Snapshot.BatchSize
	}
	scfg.Streams = s.bus.Streams
	out, err := replay.Stream(ctx, s.bus.JS, s.pool, s.set, scfg, log.Named("replay"))
	out.Notes = append(rep.Notes, out.Notes...)
	return g.finish(out, err)
}

// replayIDsFlags are the flags of cdc replay ids.
type replayIDsFlags struct {
	op           operatorFlags
	coll         string
	ids          []string
	idsFile      string
	fromGaps     bool
	applyTimeout time.Duration
	batchSize    int
}

func newReplayIDsCmd(g *globals) *cobra.Command {
	var fl replayIDsFlags
	cmd := &cobra.Command{
		Use:   "ids --collection c --ids id1,id2 | --ids-file f | --from-gaps-table",
		Short: "Re-read documents from MongoDB and publish their current state (refresh; missing -> delete)",
		Long: `Re-read each document from MongoDB (a majority read) and publish it as a
refresh event at the read's cluster time, newer than any change already
applied; a document that no longer exists is published as a delete at that
time. Rows deleted from PostgreSQL behind the replicator's back are restored
(their stale versions are forgotten first).

Ids are document keys, as id_map (legacy_object_id) and cdc dlq list print
them; a key names one _id by its type and value:
  65f1a2b3c4d5e6f708192a3b      24 hex digits (any case): that ObjectId
  "65f1a2b3c4d5e6f708192a3b"    JSON-quoted: that string (needed for a string
                                of 24 hex digits, one beginning with { or ",
                                and the strings true, false and null)
  user-42                       any other text: that string
  {"$numberLong":"7"}           a number, in canonical Extended JSON; any
                                numeric form ({"$numberInt":"7"},
                                {"$numberDouble":"7.0"}) names the same
                                document, since MongoDB compares _ids by value
  {"$date":{"$numberLong":"1700000000000"}}  any other type: canonical
                                Extended JSON
--ids is read as comma-separated values with CSV quoting, so a key holding a
comma or a double quote goes in --ids-file, which reads one key per line,
verbatim ("-" for stdin; blank lines and # comments are ignored).

--from-gaps-table reads the open rows (resolved_at IS NULL) of the
application's pg_dualwrite_gaps table, refreshes their documents, and sets
resolved_at once the refresh is applied by the running sink (its version
guard reached the refresh) within --apply-timeout; rows still pending, rows
whose refresh was dead-lettered and rows of collections without a transform
stay open and count as errors. --apply-timeout 0 resolves them as soon as
JetStream acknowledged the refresh.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.runReplayIDs(cmd, &fl) },
	}
	fl.op.add(cmd)
	cmd.Flags().StringVar(&fl.coll, "collection", "", "the documents' collection (with --ids, --ids-file)")
	cmd.Flags().StringSliceVar(&fl.ids, "ids", nil, "document ids (comma-separated or repeated)")
	cmd.Flags().StringVar(&fl.idsFile, "ids-file", "", "file with one id per line (- for stdin)")
	cmd.Flags().BoolVar(&fl.fromGaps, "from-gaps-table", false, "refresh the documents of the open rows of pg_dualwrite_gaps and resolve them")
	cmd.Flags().DurationVar(&fl.applyTimeout, "apply-timeout", 2*time.Minute, "with --from-gaps-table: how long to wait for the sink to apply the refreshes before resolving")
	cmd.Flags().IntVar(&fl.batchSize, "batch-size", 0, "ids per find (default snapshot.batch_size)")
	return cmd
}

// runReplayIDs holds cdc replay ids' work, so that newReplayIDsCmd reads
// as its help text and flags.
func (g *globals) runReplayIDs(cmd *cobra.Command, fl *replayIDsFlags) error {
	ctx := cmd.Context()
	sources := 0
	for _, on := range []bool{len(fl.ids) > 0, fl.idsFile != "", fl.fromGaps} {
		if on {
			sources++
		}
	}
	if sources != 1 {
		return &usageError{fmt.Errorf("give exactly one of --ids, --ids-file, --from-gaps-table")}
	}
	if !fl.fromGaps && fl.coll == "" {
		return &usageError{fmt.Errorf("--collection is required with --ids and --ids-file")}
	}
	if fl.idsFile != "" {
		var err error
		if fl.ids, err = readIDs(fl.idsFile, cmd.InOrStdin()); err != nil {
			return &usageError{err}
		}
	}
	s, err := g.setup(config.RoleAll, loadReplicated)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	log := s.log
	if fl.coll != "" {
		if _, ok := s.set.Get(fl.coll); !ok {
			return &usageError{fmt.Errorf("collection %q has no transform (mapped: %v)", fl.coll, s.set.Collections())}
		}
	}
	rep := &report.Report{Command: "replay ids", DryRun: fl.op.dryRun}
	if err := fl.op.guard(&s.cfg, rep); err != nil {
		return err
	}
	if err := s.connect(ctx, systems{mongo: true, pgConns: 2, bus: true}); err != nil {
		return err
	}
	if fl.batchSize <= 0 {
		fl.batchSize = s.cfg.Snapshot.BatchSize
	}
	r := replay.NewRefresher(s.client, s.bus.JS, s.pool, s.set, replay.RefreshConfig{
		Database: s.cfg.Mongo.Database, Streams: s.bus.Streams, BatchSize: fl.batchSize, DryRun: fl.op.dryRun,
	}, log.Named("replay"))
	var out *report.Report
	if fl.fromGaps {
		out, err = r.Gaps(ctx, fl.applyTimeout)
	} else {
		out, err = r.IDs(ctx, fl.coll, fl.ids)
	}
	out.Notes = append(rep.Notes, out.Notes...)
	return g.finish(out, err)
}

// readIDs reads one id per line; blank lines and # comments are skipped.
func readIDs(path string, stdin io.Reader) ([]string, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--ids-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--ids-file: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--ids-file %s holds no ids", path)
	}
	return out, nil
}
