package benchkit

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// RawApplier writes batches of RowWrites on one connection, the least a
// correct writer does: per batch one transaction; each document collapsed
// to its last version; new rows COPYed into their tables, changed rows
// COPYed into a temporary table and set in one UPDATE per table, their
// child rows deleted and COPYed again, deleted rows removed in one DELETE
// per table (the child tables' foreign keys cascade). No transform, no
// version guard, no id_map, no dead letters, no position row: it is the
// ceiling the replicator's sink is measured against, not a replicator.
type RawApplier struct {
	conn   *pgx.Conn
	tables []RawTable
	ready  bool
}

// NewRawApplier writes tables on conn (which it does not close).
func NewRawApplier(conn *pgx.Conn, tables []RawTable) *RawApplier {
	return &RawApplier{conn: conn, tables: tables}
}

// prepare registers the schema's enum types with the connection (COPY
// sends every value in binary, which needs each column type's codec) and
// creates the staging tables.
func (a *RawApplier) prepare(ctx context.Context) error {
	rows, err := a.conn.Query(ctx, `SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE t.typtype = 'e' AND n.nspname = 'public' ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("raw applier: enum types: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("raw applier: enum types: %w", err)
	}
	for _, n := range names {
		t, err := a.conn.LoadType(ctx, n)
		if err != nil {
			return fmt.Errorf("raw applier: load type %s: %w", n, err)
		}
		a.conn.TypeMap().RegisterType(t)
	}
	for _, t := range a.tables {
		q := fmt.Sprintf(`CREATE TEMP TABLE IF NOT EXISTS %s (LIKE %s INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`,
			stageName(t.Name), pgx.Identifier{t.Name}.Sanitize())
		if _, err := a.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("raw applier: staging table of %s: %w", t.Name, err)
		}
	}
	a.ready = true
	return nil
}

func stageName(table string) string { return pgx.Identifier{"raw_stage_" + table}.Sanitize() }

// tableBatch is one table's share of a batch, documents in first-seen
// order.
type tableBatch struct {
	inserts, updates [][]any
	children         [][][]any // per child table, rows of inserted and updated parents
	changed          []string  // ids whose child rows are replaced
	deletes          []string
}

// Apply writes batch (in stream order) in one transaction.
func (a *RawApplier) Apply(ctx context.Context, batch []*RowWrite) error {
	if !a.ready {
		if err := a.prepare(ctx); err != nil {
			return err
		}
	}
	type docState struct {
		existed bool
		last    *RowWrite
	}
	type docKey struct {
		table int
		id    uuid.UUID
	}
	states := map[docKey]*docState{}
	order := make([]docKey, 0, len(batch))
	for _, w := range batch {
		k := docKey{w.Table, w.ID}
		s, ok := states[k]
		if !ok {
			s = &docState{existed: !w.New}
			states[k] = s
			order = append(order, k)
		}
		s.last = w
	}
	tbs := make([]tableBatch, len(a.tables))
	for i := range tbs {
		tbs[i].children = make([][][]any, len(a.tables[i].Children))
	}
	for _, k := range order {
		s := states[k]
		tb := &tbs[k.table]
		switch {
		case s.last.Delete && s.existed:
			tb.deletes = append(tb.deletes, k.id.String())
		case s.last.Delete: // inserted and deleted within the batch
		default:
			if s.existed {
				tb.updates = append(tb.updates, s.last.Values)
				tb.changed = append(tb.changed, k.id.String())
			} else {
				tb.inserts = append(tb.inserts, s.last.Values)
			}
			for c, rows := range s.last.Children {
				tb.children[c] = append(tb.children[c], rows...)
			}
		}
	}
	return pgx.BeginFunc(ctx, a.conn, func(tx pgx.Tx) error {
		for i, t := range a.tables {
			if err := a.writeTable(ctx, tx, t, &tbs[i]); err != nil {
				return err
			}
		}
		for i := len(a.tables) - 1; i >= 0; i-- {
			t := a.tables[i]
			if len(tbs[i].deletes) == 0 {
				continue
			}
			q := fmt.Sprintf(`DELETE FROM %s WHERE %s = ANY($1::uuid[])`, pgx.Identifier{t.Name}.Sanitize(), pgx.Identifier{t.Columns[0]}.Sanitize())
			if _, err := tx.Exec(ctx, q, tbs[i].deletes); err != nil {
				return fmt.Errorf("raw applier: delete from %s: %w", t.Name, err)
			}
		}
		return nil
	})
}

func (a *RawApplier) writeTable(ctx context.Context, tx pgx.Tx, t RawTable, tb *tableBatch) error {
	ident := pgx.Identifier{t.Name}
	if len(tb.inserts) > 0 {
		if _, err := tx.CopyFrom(ctx, ident, t.Columns, pgx.CopyFromRows(tb.inserts)); err != nil {
			return fmt.Errorf("raw applier: copy into %s: %w", t.Name, err)
		}
	}
	if len(tb.updates) > 0 {
		stage := pgx.Identifier{"raw_stage_" + t.Name}
		if _, err := tx.CopyFrom(ctx, stage, t.Columns, pgx.CopyFromRows(tb.updates)); err != nil {
			return fmt.Errorf("raw applier: copy into the staging table of %s: %w", t.Name, err)
		}
		sets := make([]string, 0, len(t.Columns)-1)
		for _, c := range t.Columns[1:] {
			q := pgx.Identifier{c}.Sanitize()
			sets = append(sets, q+" = s."+q)
		}
		id := pgx.Identifier{t.Columns[0]}.Sanitize()
		q := fmt.Sprintf(`UPDATE %s AS t SET %s FROM %s AS s WHERE t.%s = s.%s`, ident.Sanitize(), strings.Join(sets, ", "), stage.Sanitize(), id, id)
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("raw applier: update %s: %w", t.Name, err)
		}
		if len(t.Children) > 0 {
			b := &pgx.Batch{}
			for c := len(t.Children) - 1; c >= 0; c-- {
				ch := t.Children[c]
				b.Queue(fmt.Sprintf(`DELETE FROM %s WHERE %s = ANY($1::uuid[])`, pgx.Identifier{ch.Name}.Sanitize(), pgx.Identifier{ch.Columns[0]}.Sanitize()), tb.changed)
			}
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return fmt.Errorf("raw applier: delete the child rows of %s: %w", t.Name, err)
			}
		}
	}
	for c, ch := range t.Children {
		if len(tb.children[c]) == 0 {
			continue
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{ch.Name}, ch.Columns, pgx.CopyFromRows(tb.children[c])); err != nil {
			return fmt.Errorf("raw applier: copy into %s: %w", ch.Name, err)
		}
	}
	return nil
}
