// Package dlq is the operator's view of dead letters: list and show them,
// retry them (re-apply in stream order, through the same sink applier),
// or drop them. cdc.dead_letters in Postgres is the record of truth; the
// DLQ stream holds copies for other consumers.
//
// A document with an open dead letter parks its later events (they are
// dead-lettered with class "parked"). Retrying a document's entries
// re-applies them all in stream order in one transaction; dropping them
// closes the gap without applying, and the document applies normally
// again from its next event.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/bson"

	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/transform"
)

// Entry is one row of cdc.dead_letters.
type Entry struct {
	ID         int64           `json:"id"`
	EventID    string          `json:"event_id"`
	Collection string          `json:"collection"`
	DocKey     string          `json:"doc_key"`
	StreamSeq  int64           `json:"stream_seq"`
	Class      string          `json:"error_class"`
	Field      string          `json:"field,omitempty"`
	Value      string          `json:"value,omitempty"`
	Reason     string          `json:"reason"`
	Attempts   int             `json:"attempts"`
	Status     string          `json:"status"`
	FirstSeen  time.Time       `json:"first_seen"`
	LastSeen   time.Time       `json:"last_seen"`
	Event      json.RawMessage `json:"event,omitempty"`
}

// Filter selects entries. At least one field must be set for Retry and
// Drop, or All.
type Filter struct {
	IDs        []int64
	Collection string
	DocKey     string
	// Status: open (default for Retry and Drop), retried, dropped, or ""
	// for any (List).
	Status string
	// All selects every entry matching Status.
	All bool
	// Limit caps List; 0 is no limit.
	Limit int
}

// ErrNoFilter refuses a Retry or Drop that names nothing.
var ErrNoFilter = errors.New("name the dead letters: --id, --collection (optionally with --doc), or --all")

func (f Filter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if len(f.IDs) > 0 {
		add("id = ANY($%d)", f.IDs)
	}
	if f.Collection != "" {
		add("collection = $%d", f.Collection)
	}
	if f.DocKey != "" {
		add("doc_key = $%d", f.DocKey)
	}
	if f.Status != "" {
		add("status = $%d", f.Status)
	}
	if len(conds) == 0 {
		return "TRUE", nil
	}
	return strings.Join(conds, " AND "), args
}

func (f Filter) named() bool { return f.All || len(f.IDs) > 0 || f.Collection != "" || f.DocKey != "" }

const columns = `id, event_id, collection, doc_key, coalesce(stream_seq, 0), error_class, coalesce(field, ''),
	coalesce(value, ''), reason, attempts, status, first_seen, last_seen`

func scan(rows pgx.Rows, withEvent bool) ([]Entry, error) {
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		dst := []any{&e.ID, &e.EventID, &e.Collection, &e.DocKey, &e.StreamSeq, &e.Class, &e.Field, &e.Value,
			&e.Reason, &e.Attempts, &e.Status, &e.FirstSeen, &e.LastSeen}
		if withEvent {
			dst = append(dst, &e.Event)
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, fmt.Errorf("dead letters: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// List returns entries matching f, oldest first.
func List(ctx context.Context, pool *pgxpool.Pool, f Filter) ([]Entry, error) {
	where, args := f.where()
	q := "SELECT " + columns + " FROM cdc.dead_letters WHERE " + where + " ORDER BY id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return scan(rows, false)
}

// Get returns one entry with its event.
func Get(ctx context.Context, pool *pgxpool.Pool, id int64) (*Entry, error) {
	rows, err := pool.Query(ctx, "SELECT "+columns+", event FROM cdc.dead_letters WHERE id = $1", id)
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", id, err)
	}
	es, err := scan(rows, true)
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("dead letter %d does not exist", id)
	}
	return &es[0], nil
}

// Report counts what Retry or Drop did.
type Report struct {
	Selected     int `json:"selected"`
	Applied      int `json:"applied"`
	Skipped      int `json:"skipped"`
	DeadLettered int `json:"dead_lettered_again"`
	Incomplete   int `json:"incomplete_transactions"`
	Dropped      int `json:"dropped"`
}

// Retry re-applies the open entries f selects, per document in stream
// order, in one transaction with the same rules as the live sink (version
// guard, transactions whole). Entries that fail again stay open with
// attempts+1. With dryRun it only counts.
func Retry(ctx context.Context, pool *pgxpool.Pool, set *transform.Set, f Filter, dryRun bool) (Report, error) {
	var rep Report
	if !f.named() {
		return rep, ErrNoFilter
	}
	if f.Status == "" {
		f.Status = "open"
	}
	where, args := f.where()
	rows, err := pool.Query(ctx, "SELECT "+columns+", event FROM cdc.dead_letters WHERE "+where+
		" ORDER BY coalesce(stream_seq, 0), id", args...)
	if err != nil {
		return rep, fmt.Errorf("dead letters: %w", err)
	}
	entries, err := scan(rows, true)
	if err != nil {
		return rep, err
	}
	rep.Selected = len(entries)
	if dryRun || len(entries) == 0 {
		return rep, nil
	}
	msgs := make([]sink.Raw, 0, len(entries))
	ids := make([]int64, 0, len(entries))
	for _, e := range entries {
		var raw bson.Raw
		if err := bson.UnmarshalExtJSON(e.Event, true, &raw); err != nil {
			return rep, fmt.Errorf("dead letter %d: stored event is not Extended JSON: %w", e.ID, err)
		}
		msgs = append(msgs, sink.Raw{Seq: uint64(e.StreamSeq), Data: raw})
		ids = append(ids, e.ID)
	}
	a := sink.NewApplier(pool, set, "", "")
	res, err := a.ApplyRawWith(ctx, set, msgs, func(tx pgx.Tx) error {
		// Mark first: the retried events must not park behind themselves;
		// a failure re-opens its own entry (attempts+1) in this same
		// transaction.
		_, err := tx.Exec(ctx, `UPDATE cdc.dead_letters SET status = 'retried', last_seen = now() WHERE id = ANY($1)`, ids)
		return err
	})
	if err != nil {
		return rep, fmt.Errorf("retry: %w", err)
	}
	rep.Applied, rep.Skipped, rep.DeadLettered, rep.Incomplete = res.Applied, res.Skipped, res.DeadLettered, res.Incomplete
	return rep, nil
}

// Drop closes the open entries f selects without applying them.
func Drop(ctx context.Context, pool *pgxpool.Pool, f Filter, dryRun bool) (Report, error) {
	var rep Report
	if !f.named() {
		return rep, ErrNoFilter
	}
	if f.Status == "" {
		f.Status = "open"
	}
	where, args := f.where()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM cdc.dead_letters WHERE "+where, args...).Scan(&n); err != nil {
		return rep, fmt.Errorf("dead letters: %w", err)
	}
	rep.Selected = n
	if dryRun {
		return rep, nil
	}
	tag, err := pool.Exec(ctx, "UPDATE cdc.dead_letters SET status = 'dropped', last_seen = now() WHERE "+where, args...)
	if err != nil {
		return rep, fmt.Errorf("drop: %w", err)
	}
	rep.Dropped = int(tag.RowsAffected())
	return rep, nil
}
