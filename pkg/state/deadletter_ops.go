package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
)

// The operator's side of cdc.dead_letters: list, show, select for a retry,
// record a retry's outcome, drop and reopen. Every selection that changes
// entries is widened to whole Mongo transactions: the events of one
// transaction were dead-lettered together and are retried, dropped and
// reopened together.

// Outcome is what an attempt on a dead letter came to, as
// cdc.dead_letter_attempts records it.
type Outcome string

const (
	// OutcomeOpen: the entry is open (a first recording from before
	// history was kept, or a reopen).
	OutcomeOpen Outcome = "open"
	// OutcomeApplied: a retry applied the event.
	OutcomeApplied Outcome = "applied"
	// OutcomeSkipped: a retry found the event superseded (version guard).
	OutcomeSkipped Outcome = "skipped"
	// OutcomeDeadLettered: the event was dead-lettered (again).
	OutcomeDeadLettered Outcome = "dead_lettered"
	// OutcomeIncomplete: a retry did not have the event's whole Mongo
	// transaction and left it open.
	OutcomeIncomplete Outcome = "incomplete"
	// OutcomeDropped: an operator closed the entry without applying it.
	OutcomeDropped Outcome = "dropped"
)

// ErrNoDeadLetter means the named dead letter does not exist.
var ErrNoDeadLetter = errors.New("no such dead letter")

// ErrUnnamed refuses a change whose filter names no dead letters.
var ErrUnnamed = errors.New("the filter names no dead letters (ids, collection, document, transaction, or all)")

// ErrReasonRequired refuses a drop or reopen without the operator's
// reason.
var ErrReasonRequired = errors.New("a reason is required")

// ErrDeadLetterChanged means entries changed status while an operation
// ran (a concurrent drop, reopen or retry): the operation must be rolled
// back and run again.
var ErrDeadLetterChanged = errors.New("dead letters changed while the operation ran")

// DeadLetter is one row of cdc.dead_letters. Class, Field, Value and
// Reason are as first recorded; later attempts are in its history.
type DeadLetter struct {
	ID         int64  `json:"id"`
	EventID    string `json:"event_id"`
	Collection string `json:"collection"`
	DocKey     string `json:"doc_key"`
	// Stream is the stream StreamSeq is a sequence of; "" (stream NULL)
	// is the default stream, nats.stream (an entry recorded before
	// streams were, when there were no lanes), or none (StreamSeq 0).
	Stream    string `json:"stream,omitempty"`
	StreamSeq int64  `json:"stream_seq"`
	Class     Class  `json:"error_class"`
	Field     string `json:"field,omitempty"`
	Value     string `json:"value,omitempty"`
	Reason    string `json:"reason"`
	Attempts  int    `json:"attempts"`
	Status    Status `json:"status"`
	// StatusReason is why the status last changed (an operator's reason);
	// StatusAt when (nil: never changed since first recorded).
	StatusReason string     `json:"status_reason,omitempty"`
	StatusAt     *time.Time `json:"status_at,omitempty"`
	FirstSeen    time.Time  `json:"first_seen"`
	LastSeen     time.Time  `json:"last_seen"`
	// TxnID, TxnIndex and TxnLast place the event in its Mongo
	// transaction; TxnID is "" outside one (or for an entry recorded
	// before transactions were kept).
	TxnID    string `json:"txn_id,omitempty"`
	TxnIndex *int   `json:"txn_index,omitempty"`
	TxnLast  bool   `json:"txn_last,omitempty"`
	// ClusterTime is the event's source cluster time (nil for an entry
	// recorded before positions were kept).
	ClusterTime *event.ClusterTime `json:"cluster_time,omitempty"`
	// Event is the envelope as canonical Extended JSON; only GetDeadLetter
	// and SelectRetry read it.
	Event json.RawMessage `json:"event,omitempty"`
}

// Attempt is one row of a dead letter's history
// (cdc.dead_letter_attempts): its first recording, each retry with its
// outcome (and, dead-lettered again, the new class and reason), each drop
// and reopen with the operator's reason.
type Attempt struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Action  Action    `json:"action"`
	Outcome Outcome   `json:"outcome"`
	Class   Class     `json:"error_class,omitempty"`
	Field   string    `json:"field,omitempty"`
	Value   string    `json:"value,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// DeadLetterFilter selects dead letters. The fields set are ANDed; All
// selects everything (further narrowed by the fields set).
type DeadLetterFilter struct {
	IDs        []int64
	Collection string
	DocKey     string
	// TxnID selects the entries of one Mongo transaction.
	TxnID string
	// Status narrows the selection: "" is any (ListDeadLetters) or the
	// operation's own (open for SelectRetry and DropDeadLetters, dropped
	// or retried for ReopenDeadLetters).
	Status Status
	All    bool
	// Limit caps ListDeadLetters; 0 is no limit.
	Limit int
}

// Named reports whether f names any entries; the operations that change
// entries refuse a filter that does not (ErrUnnamed).
func (f DeadLetterFilter) Named() bool {
	return f.All || len(f.IDs) > 0 || f.Collection != "" || f.DocKey != "" || f.TxnID != ""
}

// where renders f (without Limit) as a condition on alias d, with its
// arguments numbered from $1.
func (f DeadLetterFilter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if len(f.IDs) > 0 {
		add("d.id = ANY($%d)", f.IDs)
	}
	if f.Collection != "" {
		add("d.collection = $%d", f.Collection)
	}
	if f.DocKey != "" {
		add("d.doc_key = $%d", f.DocKey)
	}
	if f.TxnID != "" {
		add("d.txn_id = $%d", f.TxnID)
	}
	if f.Status != "" {
		add("d.status = $%d", string(f.Status))
	}
	if len(conds) == 0 {
		return "TRUE", nil
	}
	return strings.Join(conds, " AND "), args
}

const dlColumns = `d.id, d.event_id, d.collection, d.doc_key, coalesce(d.stream_seq, 0), d.error_class, coalesce(d.field, ''),
	coalesce(d.value, ''), d.reason, d.attempts, d.status, coalesce(d.status_reason, ''), d.status_at, d.first_seen, d.last_seen,
	coalesce(d.txn_id, ''), d.txn_index, coalesce(d.txn_last, false), d.cluster_time, coalesce(d.stream, '')`

// sourceOrder orders entries by source position; an entry recorded
// before positions were kept sorts first (as OpenDeadLetterPositions
// counts it).
const sourceOrder = `d.cluster_time NULLS FIRST, d.txn_index NULLS FIRST, d.stream_seq NULLS FIRST, d.id`

// scanDeadLetters reads rows of dlColumns, then the event when withEvent,
// then a boolean "named" column when named is non-nil (its values are
// appended to it).
func scanDeadLetters(rows pgx.Rows, withEvent bool, named *[]bool) ([]DeadLetter, error) {
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		var class, status string
		var txnIndex *int32
		var ct *int64
		var isNamed bool
		dst := []any{&d.ID, &d.EventID, &d.Collection, &d.DocKey, &d.StreamSeq, &class, &d.Field, &d.Value, &d.Reason,
			&d.Attempts, &status, &d.StatusReason, &d.StatusAt, &d.FirstSeen, &d.LastSeen, &d.TxnID, &txnIndex, &d.TxnLast, &ct, &d.Stream}
		if withEvent {
			dst = append(dst, &d.Event)
		}
		if named != nil {
			dst = append(dst, &isNamed)
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, err
		}
		d.Class, d.Status = Class(class), Status(status)
		if txnIndex != nil {
			ix := int(*txnIndex)
			d.TxnIndex = &ix
		}
		if ct != nil {
			c := event.Unpack(*ct)
			d.ClusterTime = &c
		}
		out = append(out, d)
		if named != nil {
			*named = append(*named, isNamed)
		}
	}
	return out, rows.Err()
}

// ListDeadLetters returns the entries f selects (without their events),
// oldest first.
func ListDeadLetters(ctx context.Context, db DB, f DeadLetterFilter) ([]DeadLetter, error) {
	where, args := f.where()
	q := "SELECT " + dlColumns + " FROM cdc.dead_letters d WHERE " + where + " ORDER BY d.id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := scanDeadLetters(rows, false, nil)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// GetDeadLetter returns one entry with its event; an id that does not
// exist is ErrNoDeadLetter.
func GetDeadLetter(ctx context.Context, db DB, id int64) (*DeadLetter, error) {
	rows, err := db.Query(ctx, "SELECT "+dlColumns+", d.event FROM cdc.dead_letters d WHERE d.id = $1", id)
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", id, err)
	}
	out, err := scanDeadLetters(rows, true, nil)
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", id, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dead letter %d: %w", id, ErrNoDeadLetter)
	}
	return &out[0], nil
}

// DeadLetterHistory returns every attempt on entry id in the order they
// were recorded; an id that does not exist is ErrNoDeadLetter.
func DeadLetterHistory(ctx context.Context, db DB, id int64) ([]Attempt, error) {
	rows, err := db.Query(ctx, `SELECT a.id, a.at, a.action, a.outcome, coalesce(a.error_class, ''), coalesce(a.field, ''),
			coalesce(a.value, ''), coalesce(a.reason, '')
		FROM cdc.dead_letters d LEFT JOIN cdc.dead_letter_attempts a ON a.dead_letter_id = d.id
		WHERE d.id = $1 ORDER BY a.id`, id)
	if err != nil {
		return nil, fmt.Errorf("history of dead letter %d: %w", id, err)
	}
	defer rows.Close()
	found := false
	out := []Attempt{}
	for rows.Next() {
		found = true
		var aid *int64
		var at *time.Time
		var action, outcome, class *string
		var a Attempt
		if err := rows.Scan(&aid, &at, &action, &outcome, &class, &a.Field, &a.Value, &a.Reason); err != nil {
			return nil, fmt.Errorf("history of dead letter %d: %w", id, err)
		}
		if aid == nil {
			continue // the entry exists without history rows
		}
		a.ID, a.At, a.Action, a.Outcome, a.Class = *aid, *at, Action(*action), Outcome(*outcome), Class(*class)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history of dead letter %d: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("dead letter %d: %w", id, ErrNoDeadLetter)
	}
	return out, nil
}

// Selection is what an operation acts on: the entries its filter named
// and the other entries of their Mongo transactions, in source-position
// order.
type Selection struct {
	Entries []DeadLetter
	// Added lists the ids of Entries the filter did not name: they were
	// added to keep their transactions whole.
	Added []int64
}

// expandSQL is the CTE "sel (id, named)": the entries f names under
// namedStatus plus, under txnStatus, every other entry of their Mongo
// transactions. Both statuses are SQL conditions on alias d written by
// this package, never input.
func expandSQL(f DeadLetterFilter, namedStatus, txnStatus string) (string, []any) {
	where, args := f.where()
	return `WITH named AS (SELECT d.id, d.txn_id FROM cdc.dead_letters d WHERE ` + namedStatus + ` AND ` + where + `),
		sel AS (
			SELECT d.id, (d.id IN (SELECT id FROM named)) AS named FROM cdc.dead_letters d
			WHERE d.id IN (SELECT id FROM named)
			   OR (` + txnStatus + ` AND d.txn_id IN (SELECT txn_id FROM named WHERE txn_id IS NOT NULL)))`, args
}

func selection(entries []DeadLetter, named []bool) *Selection {
	s := &Selection{Entries: entries}
	for i, n := range named {
		if !n {
			s.Added = append(s.Added, entries[i].ID)
		}
	}
	return s
}

// openOnly checks the filter of an operation on open entries.
func openOnly(f DeadLetterFilter, verb string) error {
	if !f.Named() {
		return ErrUnnamed
	}
	if f.Status != "" && f.Status != StatusOpen {
		return fmt.Errorf("only open dead letters are %s, not %s ones", verb, f.Status)
	}
	return nil
}

// SelectOpen returns the open entries f names, widened to every open
// entry of their Mongo transactions (with their events when withEvents).
// It changes nothing (a dry run of DropDeadLetters).
func SelectOpen(ctx context.Context, db DB, f DeadLetterFilter, withEvents bool) (*Selection, error) {
	if err := openOnly(f, "retried or dropped"); err != nil {
		return nil, err
	}
	f.Status = ""
	cte, args := expandSQL(f, "d.status = 'open'", "d.status = 'open'")
	cols := dlColumns
	if withEvents {
		cols += ", d.event"
	}
	rows, err := db.Query(ctx, cte+` SELECT `+cols+`, sel.named FROM sel JOIN cdc.dead_letters d ON d.id = sel.id ORDER BY `+sourceOrder, args...)
	if err != nil {
		return nil, fmt.Errorf("select dead letters: %w", err)
	}
	var named []bool
	entries, err := scanDeadLetters(rows, withEvents, &named)
	if err != nil {
		return nil, fmt.Errorf("select dead letters: %w", err)
	}
	return selection(entries, named), nil
}

// SelectClosed returns the entries f names that are not open (dropped or
// retried; f.Status narrows to one), widened to every closed entry of
// their Mongo transactions. It changes nothing (a dry run of
// ReopenDeadLetters).
func SelectClosed(ctx context.Context, db DB, f DeadLetterFilter) (*Selection, error) {
	if !f.Named() {
		return nil, ErrUnnamed
	}
	if f.Status == StatusOpen {
		return nil, fmt.Errorf("reopen acts on dropped or retried dead letters, not open ones")
	}
	cte, args := expandSQL(f, "d.status <> 'open'", "d.status <> 'open'")
	rows, err := db.Query(ctx, cte+` SELECT `+dlColumns+`, sel.named FROM sel JOIN cdc.dead_letters d ON d.id = sel.id ORDER BY `+sourceOrder, args...)
	if err != nil {
		return nil, fmt.Errorf("select dead letters: %w", err)
	}
	var named []bool
	entries, err := scanDeadLetters(rows, false, &named)
	if err != nil {
		return nil, fmt.Errorf("select dead letters: %w", err)
	}
	return selection(entries, named), nil
}

// RetrySelection is what a retry of a filter would apply: the open
// entries it names with every open entry of their Mongo transactions,
// with their events, in source-position order. Gaps lists the
// transactions that are still not whole among them; a retry must refuse
// those (or apply nothing of them).
type RetrySelection struct {
	Selection
	Gaps []TxnGap
}

// SelectRetry selects for a retry: SelectOpen with events, then the
// completeness check of every transaction (with the transaction's closed
// entries listed in each gap). It changes nothing.
func SelectRetry(ctx context.Context, db DB, f DeadLetterFilter) (*RetrySelection, error) {
	sel, err := SelectOpen(ctx, db, f, true)
	if err != nil {
		return nil, err
	}
	rs := &RetrySelection{Selection: *sel, Gaps: TxnGaps(sel.Entries)}
	if len(rs.Gaps) == 0 {
		return rs, nil
	}
	txns := make([]string, len(rs.Gaps))
	for i, g := range rs.Gaps {
		txns[i] = g.TxnID
	}
	rows, err := db.Query(ctx, "SELECT "+dlColumns+" FROM cdc.dead_letters d WHERE d.txn_id = ANY($1) AND d.status <> 'open' ORDER BY d.txn_index, d.id", txns)
	if err != nil {
		return nil, fmt.Errorf("closed parts of incomplete transactions: %w", err)
	}
	closed, err := scanDeadLetters(rows, false, nil)
	if err != nil {
		return nil, fmt.Errorf("closed parts of incomplete transactions: %w", err)
	}
	for i := range rs.Gaps {
		for _, d := range closed {
			if d.TxnID == rs.Gaps[i].TxnID {
				rs.Gaps[i].Closed = append(rs.Gaps[i].Closed, partOf(d))
			}
		}
	}
	return rs, nil
}

// RetryOutcome is what a retry did to one open entry, for MarkRetried.
type RetryOutcome struct {
	ID      int64
	Outcome Outcome
	// Class and Reason go to the history row of an outcome that leaves the
	// entry open (OutcomeIncomplete: ClassIncomplete and the missing
	// indexes).
	Class  Class
	Reason string
}

// MarkRetried records in tx (the retry's apply transaction) what a retry
// did: an entry whose event was applied or skipped is closed (status
// retried, status_at now, status_reason NULL); any other outcome leaves it
// open. Either way one history row (action retried) is appended per
// outcome. Entries dead-lettered again are not passed here:
// RecordDeadLetters re-opened them and wrote their history.
//
// An entry to close that is no longer open (a concurrent drop, reopen or
// retry) is ErrDeadLetterChanged: the caller must roll tx back.
func MarkRetried(ctx context.Context, tx DB, outs []RetryOutcome) error {
	if len(outs) == 0 {
		return nil
	}
	var closing []int64
	n := len(outs)
	ids, outcomes, classes, reasons := make([]int64, n), make([]string, n), make([]*string, n), make([]*string, n)
	for i, o := range outs {
		switch o.Outcome {
		case OutcomeApplied, OutcomeSkipped:
			closing = append(closing, o.ID)
		case OutcomeDeadLettered:
			return fmt.Errorf("dead letter %d: a retry's dead letters are recorded by RecordDeadLetters, not MarkRetried", o.ID)
		case "":
			return fmt.Errorf("dead letter %d: retry outcome missing", o.ID)
		}
		ids[i], outcomes[i] = o.ID, string(o.Outcome)
		if o.Class != "" {
			c := string(o.Class)
			classes[i] = &c
		}
		if o.Reason != "" {
			r := o.Reason
			reasons[i] = &r
		}
	}
	if len(closing) > 0 {
		rows, err := tx.Query(ctx, `UPDATE cdc.dead_letters SET status = 'retried', status_at = now(), status_reason = NULL
			WHERE id = ANY($1) AND status = 'open' RETURNING id`, closing)
		if err != nil {
			return fmt.Errorf("close retried dead letters: %w", err)
		}
		closed, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("close retried dead letters: %w", err)
		}
		if len(closed) != len(closing) {
			done := map[int64]bool{}
			for _, id := range closed {
				done[id] = true
			}
			var gone []int64
			for _, id := range closing {
				if !done[id] {
					gone = append(gone, id)
				}
			}
			return fmt.Errorf("dead letters %v are no longer open: %w", gone, ErrDeadLetterChanged)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO cdc.dead_letter_attempts (dead_letter_id, action, outcome, error_class, reason)
		SELECT id, 'retried', outcome, class, reason FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, outcome, class, reason)`,
		ids, outcomes, classes, reasons); err != nil {
		return fmt.Errorf("record retry history: %w", err)
	}
	return nil
}

// DropDeadLetters closes the open entries f names, and every open entry
// of their Mongo transactions, without applying them: status dropped with
// the operator's reason, and a history row each (action dropped). One
// statement: what it returns is exactly what it dropped. It refuses an
// empty reason (ErrReasonRequired) and a filter that names nothing.
func DropDeadLetters(ctx context.Context, db DB, f DeadLetterFilter, reason string) (*Selection, error) {
	if err := openOnly(f, "dropped"); err != nil {
		return nil, err
	}
	f.Status = ""
	return changeStatus(ctx, db, f, reason, "d.status = 'open'", "d.status = 'open'", StatusDropped, ActionDropped, OutcomeDropped)
}

// ReopenDeadLetters makes the dropped or retried entries f names open
// again (f.Status narrows to one of the two), with every closed entry of
// their Mongo transactions: status open with the operator's reason, and a
// history row each (action reopened). An open entry parks its document's
// later events again, and the next retry applies it. It refuses an empty
// reason (ErrReasonRequired) and a filter that names nothing.
func ReopenDeadLetters(ctx context.Context, db DB, f DeadLetterFilter, reason string) (*Selection, error) {
	if !f.Named() {
		return nil, ErrUnnamed
	}
	if f.Status == StatusOpen {
		return nil, fmt.Errorf("reopen acts on dropped or retried dead letters, not open ones")
	}
	return changeStatus(ctx, db, f, reason, "d.status <> 'open'", "d.status <> 'open'", StatusOpen, ActionReopened, OutcomeOpen)
}

func changeStatus(ctx context.Context, db DB, f DeadLetterFilter, reason, namedStatus, txnStatus string, to Status, action Action, outcome Outcome) (*Selection, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, ErrReasonRequired
	}
	cte, args := expandSQL(f, namedStatus, txnStatus)
	n := len(args)
	args = append(args, string(to), reason, string(action), string(outcome))
	q := cte + fmt.Sprintf(`,
		up AS (
			UPDATE cdc.dead_letters d SET status = $%[1]d, status_reason = $%[2]d, status_at = now()
			FROM sel WHERE d.id = sel.id AND %[5]s
			RETURNING d.*, sel.named),
		hist AS (
			INSERT INTO cdc.dead_letter_attempts (dead_letter_id, action, outcome, reason)
			SELECT id, $%[3]d, $%[4]d, $%[2]d FROM up)
		SELECT `, n+1, n+2, n+3, n+4, txnStatus) + dlColumns + `, d.named FROM up d ORDER BY ` + sourceOrder
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s dead letters: %w", action, err)
	}
	var named []bool
	entries, err := scanDeadLetters(rows, false, &named)
	if err != nil {
		return nil, fmt.Errorf("%s dead letters: %w", action, err)
	}
	return selection(entries, named), nil
}
