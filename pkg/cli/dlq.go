package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/dlq"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
)

func newDLQCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, show, retry, drop or reopen dead letters (cdc.dead_letters)",
		Long: `Dead letters are events the sink could not apply: a transform rejection
(with the field and the reason), a constraint violation on the event's own
data, an update or delete of an append-only ledger document, an event
parked behind an earlier dead letter of the same document, or part of a
Mongo transaction whose other events never all arrived.

The events of one Mongo transaction are acted on together: retry, drop and
reopen widen their selection to every entry of the same transactions, and
say so. retry re-applies the selected entries in source order with the
live sink's rules (version guard, transactions whole) and closes exactly
the entries it applied (or found superseded); an entry that fails again
stays open, with the attempt in its history. A retry whose transaction is
still not whole among the open entries is refused and changes nothing.
drop closes entries without applying them, reopen makes dropped or retried
entries open again; both need --reason. The first class, field and reason
of an entry are never overwritten: show and history list every attempt.
retry, drop and reopen accept --dry-run and are safe to run twice.

Each entry names the message it was, as STREAM:SEQ (JSON: stream and
stream_seq): with sink lanes every lane's stream <nats.stream>_<lane>
numbers its messages from 1, so a sequence alone is ambiguous. An entry
recorded before streams were recorded belongs to the default stream
(nats.stream), which list and show name.`,
	}
	d := &dlqCmd{g: g}
	cmd.AddCommand(d.listCmd(), d.showCmd(), d.historyCmd(), d.retryCmd(), d.dropCmd(), d.reopenCmd())
	return cmd
}

// dlqCmd holds the flags of the dlq subcommands: one runs per process, so
// they share the variables (--json, --dry-run, the filter) as they share
// the flags' meaning.
type dlqCmd struct {
	g      *globals
	f      dlq.Filter
	ids    []string
	status string // list --status
	closed string // reopen --status
	asJSON bool
	dryRun bool
	reason string
	// defaultStream is nats.stream: the stream of entries recorded
	// before streams were (stream NULL).
	defaultStream string
}

// addFilter adds the selection flags (--id, --collection, --doc, --txn)
// and --json.
func (d *dlqCmd) addFilter(c *cobra.Command) {
	c.Flags().StringSliceVar(&d.ids, "id", nil, "dead letter ids (repeatable or comma-separated)")
	c.Flags().StringVar(&d.f.Collection, "collection", "", "only this collection")
	c.Flags().StringVar(&d.f.DocKey, "doc", "", "only this document id: 24 hex digits for an ObjectId, \"...\" for a string, Extended JSON for a number (the form replay ids reads)")
	c.Flags().StringVar(&d.f.TxnID, "txn", "", "only this Mongo transaction (txn_id: lsid:txnNumber)")
	c.Flags().BoolVar(&d.asJSON, "json", false, "print JSON")
}

// parseIDs completes the filter from the flags: --doc as a canonical
// key, --id as numbers.
func (d *dlqCmd) parseIDs() error {
	if d.f.DocKey != "" {
		key, err := event.CanonicalKey(d.f.DocKey)
		if err != nil {
			return &usageError{fmt.Errorf("--doc: %w", err)}
		}
		d.f.DocKey = key
	}
	for _, s := range d.ids {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return &usageError{fmt.Errorf("--id %q is not a number", s)}
		}
		d.f.IDs = append(d.f.IDs, n)
	}
	return nil
}

// parseDeadLetterID reads the ID argument of show and history.
func parseDeadLetterID(arg string) (int64, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil {
		return 0, &usageError{fmt.Errorf("%q is not a dead letter id", arg)}
	}
	return id, nil
}

// withPool runs run on a PostgreSQL pool of the configuration (two
// connections), closed when it returns.
func (d *dlqCmd) withPool(cmd *cobra.Command, run func(db state.DB) error) error {
	s, err := d.g.setup(config.RolePostgres, loadConfig)
	if err != nil {
		return err
	}
	defer s.close(cmd.Context())
	d.defaultStream = s.cfg.NATS.Stream
	if err := s.connect(cmd.Context(), systems{pgConns: 2}); err != nil {
		return err
	}
	return run(s.pool)
}

func (d *dlqCmd) listCmd() *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters (open ones by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := d.parseIDs(); err != nil {
				return err
			}
			switch d.status {
			case "any":
			case string(state.StatusOpen), string(state.StatusRetried), string(state.StatusDropped):
				d.f.Status = state.Status(d.status)
			default:
				return &usageError{fmt.Errorf("--status %q: want open, retried, dropped or any", d.status)}
			}
			return d.withPool(cmd, func(db state.DB) error {
				es, err := dlq.List(cmd.Context(), db, d.f)
				if err != nil {
					return err
				}
				return d.writeList(es)
			})
		},
	}
	d.addFilter(list)
	list.Flags().StringVar(&d.status, "status", "open", "open, retried, dropped or any")
	list.Flags().IntVar(&d.f.Limit, "limit", 0, "at most this many (0: all)")
	return list
}

// writeList prints list's entries: JSON, or a table and a count.
func (d *dlqCmd) writeList(es []dlq.Entry) error {
	out := d.g.stdout
	for i := range es {
		nameStream(&es[i], d.defaultStream)
	}
	if d.asJSON {
		if es == nil {
			es = []dlq.Entry{}
		}
		return json.NewEncoder(out).Encode(es)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tCLASS\tSTATUS\tCOLLECTION\tDOCUMENT\tSTREAM:SEQ\tTXN\tATTEMPTS\tLAST SEEN\tFIELD\tREASON")
	for _, e := range es {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, e.Class, e.Status, e.Collection, e.DocKey,
			seqCell(e), txnCell(e), e.Attempts, e.LastSeen.UTC().Format("2006-01-02 15:04:05Z"), e.Field, clip(e.Reason, 80))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d dead letters\n", len(es))
	return nil
}

func (d *dlqCmd) showCmd() *cobra.Command {
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one dead letter with its event (canonical Extended JSON) and its history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseDeadLetterID(args[0])
			if err != nil {
				return err
			}
			return d.withPool(cmd, func(db state.DB) error {
				e, err := dlq.Show(cmd.Context(), db, id)
				if err != nil {
					return err
				}
				nameStream(&e.Entry, d.defaultStream)
				enc := json.NewEncoder(d.g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(e)
			})
		},
	}
	show.Flags().BoolVar(&d.asJSON, "json", false, "print JSON (show always does; accepted like the other commands)")
	return show
}

func (d *dlqCmd) historyCmd() *cobra.Command {
	history := &cobra.Command{
		Use:   "history ID",
		Short: "Every attempt on one dead letter, oldest first: its recording, each retry, drop and reopen",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseDeadLetterID(args[0])
			if err != nil {
				return err
			}
			return d.withPool(cmd, func(db state.DB) error {
				h, err := dlq.History(cmd.Context(), db, id)
				if err != nil {
					return err
				}
				if d.asJSON {
					return json.NewEncoder(d.g.stdout).Encode(h)
				}
				w := tabwriter.NewWriter(d.g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "AT\tACTION\tOUTCOME\tCLASS\tFIELD\tREASON")
				for _, a := range h {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.At.UTC().Format("2006-01-02 15:04:05.000Z"), a.Action, a.Outcome,
						a.Class, a.Field, a.Reason)
				}
				return w.Flush()
			})
		},
	}
	history.Flags().BoolVar(&d.asJSON, "json", false, "print JSON")
	return history
}

// actionCmd is retry, drop or reopen: a selection (--all or a filter),
// --dry-run, --reason when needReason, and run doing the work.
func (d *dlqCmd) actionCmd(use, short, allHelp string, needReason bool, run func(cmd *cobra.Command) (dlq.Report, error)) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return d.runAction(cmd, use, needReason, run)
		},
	}
	d.addFilter(c)
	c.Flags().BoolVar(&d.f.All, "all", false, allHelp)
	c.Flags().BoolVar(&d.dryRun, "dry-run", false, "say what would be done, change nothing")
	if needReason {
		c.Flags().StringVar(&d.reason, "reason", "", "why (required; kept with the entry and in its history)")
	}
	return c
}

// runAction checks the selection, runs the action and reports it (JSON
// or text). A refusal (*dlq.IncompleteError) with --json is still
// reported; entries that failed again or were not whole fail the command.
func (d *dlqCmd) runAction(cmd *cobra.Command, use string, needReason bool, run func(cmd *cobra.Command) (dlq.Report, error)) error {
	if err := d.parseIDs(); err != nil {
		return err
	}
	if !d.f.Named() {
		return &usageError{dlq.ErrNoFilter}
	}
	if needReason && strings.TrimSpace(d.reason) == "" {
		return &usageError{dlq.ErrNoReason}
	}
	rep, err := run(cmd)
	if errors.Is(err, dlq.ErrNoFilter) || errors.Is(err, dlq.ErrNoReason) {
		return &usageError{err}
	}
	var ie *dlq.IncompleteError
	if err != nil && !(d.asJSON && errors.As(err, &ie)) {
		return err
	}
	if d.asJSON {
		if rep.Entries == nil {
			rep.Entries = []dlq.EntryResult{}
		}
		if jerr := json.NewEncoder(d.g.stdout).Encode(rep); jerr != nil {
			return jerr
		}
		if err != nil {
			return err // a refusal: the report lists it, the exit code says it
		}
	} else {
		printReport(d.g.stdout, use, rep, d.dryRun)
	}
	if rep.DeadLettered > 0 || rep.Incomplete > 0 {
		return fmt.Errorf("%d events failed again and %d were not retried with their whole transaction; they stay open: see cdc dlq list and cdc dlq history ID",
			rep.DeadLettered, rep.Incomplete)
	}
	return nil
}

func (d *dlqCmd) retryCmd() *cobra.Command {
	return d.actionCmd("retry", "Re-apply open dead letters in source order, whole Mongo transactions", "every open dead letter", false,
		func(cmd *cobra.Command) (dlq.Report, error) {
			s, err := d.g.setup(config.RolePostgres, loadMappings)
			if err != nil {
				return dlq.Report{}, err
			}
			defer s.close(cmd.Context())
			if err := s.connect(cmd.Context(), systems{pgConns: 2}); err != nil {
				return dlq.Report{}, err
			}
			return dlq.Retry(cmd.Context(), s.pool, s.set, d.f, d.dryRun)
		})
}

func (d *dlqCmd) dropCmd() *cobra.Command {
	return d.actionCmd("drop", "Close open dead letters without applying them (whole Mongo transactions)", "every open dead letter", true,
		func(cmd *cobra.Command) (dlq.Report, error) {
			var rep dlq.Report
			err := d.withPool(cmd, func(db state.DB) error {
				var err error
				rep, err = dlq.Drop(cmd.Context(), db, d.f, d.reason, d.dryRun)
				return err
			})
			return rep, err
		})
}

func (d *dlqCmd) reopenCmd() *cobra.Command {
	reopen := d.actionCmd("reopen", "Make dropped or retried dead letters open again (whole Mongo transactions)",
		"every dropped or retried dead letter (narrow with --status)", true, func(cmd *cobra.Command) (dlq.Report, error) {
			switch d.closed {
			case "any":
			case string(state.StatusDropped), string(state.StatusRetried):
				d.f.Status = state.Status(d.closed)
			default:
				return dlq.Report{}, &usageError{fmt.Errorf("--status %q: want dropped, retried or any", d.closed)}
			}
			var rep dlq.Report
			err := d.withPool(cmd, func(db state.DB) error {
				var err error
				rep, err = dlq.Reopen(cmd.Context(), db, d.f, d.reason, d.dryRun)
				return err
			})
			return rep, err
		})
	reopen.Flags().StringVar(&d.closed, "status", "any", "only entries in this status: dropped, retried or any")
	return reopen
}

// printReport writes what retry, drop or reopen did, naming the entries
// added to keep transactions whole and, for a retry, what stays open.
func printReport(w io.Writer, verb string, rep dlq.Report, dryRun bool) {
	did := map[string]string{"retry": "retried", "drop": "dropped", "reopen": "reopened"}[verb]
	if dryRun {
		did = "would " + verb
	}
	fmt.Fprintf(w, "%s %d dead letters", did, rep.Selected)
	if verb == "retry" && !dryRun {
		fmt.Fprintf(w, ": applied %d, skipped %d (already newer), dead-lettered again %d, not whole %d; closed %d, still open %d",
			rep.Applied, rep.Skipped, rep.DeadLettered, rep.Incomplete, rep.Closed, len(rep.StillOpen()))
	}
	fmt.Fprintln(w)
	added := rep.AddedFor()
	txns := make([]string, 0, len(added))
	for t := range added {
		txns = append(txns, t)
	}
	sort.Strings(txns)
	for _, t := range txns {
		fmt.Fprintf(w, "  + entries %s: the rest of Mongo transaction %s (%s acts on whole transactions)\n", joinIDs(added[t]), t, verb)
	}
	for _, g := range rep.Refused {
		fmt.Fprintf(w, "  would refuse: %s\n", g)
	}
	if verb == "retry" && !dryRun {
		if open := rep.StillOpen(); len(open) > 0 {
			fmt.Fprintf(w, "  still open: %s\n", joinIDs(open))
		}
	}
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ", ")
}

// nameStream fills in the stream of an entry recorded before dead letters
// named theirs (stream NULL): the default stream, the only one there was
// without lanes. An entry without a sequence names none.
func nameStream(e *dlq.Entry, defaultStream string) {
	if e.Stream == "" && e.StreamSeq > 0 {
		e.Stream = defaultStream
	}
}

// seqCell is the message an entry was, STREAM:SEQ ("-" when the entry
// has no sequence).
func seqCell(e dlq.Entry) string {
	if e.StreamSeq <= 0 {
		return "-"
	}
	return fmt.Sprintf("%s:%d", e.Stream, e.StreamSeq)
}

// txnCell abbreviates an entry's place in its transaction for the table
// (the whole id is in --json and show).
func txnCell(e dlq.Entry) string {
	if e.TxnID == "" {
		return "-"
	}
	id := e.TxnID
	if i := strings.LastIndexByte(id, ':'); i > 8 {
		id = id[:8] + "…" + id[i:]
	}
	if e.TxnIndex != nil {
		id += fmt.Sprintf("#%d", *e.TxnIndex)
	}
	if e.TxnLast {
		id += "(last)"
	}
	return id
}

func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-3]) + "..."
}
