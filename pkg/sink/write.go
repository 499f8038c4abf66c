package sink

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// Rows are written set-based: one statement per table and kind of change,
// every column passed as a text[] and cast to the column's own type in SQL
// (unnest). That is one parameter per column instead of one per value, and
// it keeps each type's exact text form (numeric, timestamptz) end to end.
// Keys are unique within a statement: applyUnits collapses each document to
// its newest event first (ON CONFLICT refuses the same key twice, 21000).

// columnTypes caches format_type() of each column, per table.
type columnTypes struct {
	mu     sync.Mutex
	tables map[string]map[string]string
}

func (c *columnTypes) get(ctx context.Context, q pgx.Tx, table string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tables[table]; ok {
		return t, nil
	}
	rows, err := q.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, table)
	if err != nil {
		return nil, fmt.Errorf("column types of %s: %w", table, err)
	}
	t := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return nil, fmt.Errorf("column types of %s: %w", table, err)
		}
		t[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("column types of %s: %w", table, err)
	}
	if len(t) == 0 {
		return nil, fault.Fatal.Errorf("table %s has no columns (does it exist?)", table)
	}
	if c.tables == nil {
		c.tables = map[string]map[string]string{}
	}
	c.tables[table] = t
	return t, nil
}

// tableWrites is one mapping's share of a batch.
type tableWrites struct {
	m       *transform.Mapping
	upserts [][]*string // row-major, len(ColumnNames())
	delIDs  []*string
	delAt   []*string // soft deletes only
	// children, one per Mapping.Children entry: the set of each upserted
	// parent is replaced.
	children []*childWrites
}

type childWrites struct {
	set     transform.ChildSet // for the table and column names
	parents []*string
	rows    [][]*string // parent column first
}

// rowBuilder collects a batch's rows per table as text, with the
// dangling references its null-policy references leave.
type rowBuilder struct {
	ids     idSet
	present map[docRef]bool
	// tables are the mappings' writes in first-seen order.
	tables    []*tableWrites
	byMapping map[*transform.Mapping]*tableWrites
	dangling  []state.Dangling
}

// queueWrites adds the batch's row statements to b.
func (a *Applier) queueWrites(ctx context.Context, tx pgx.Tx, b *pgx.Batch, winners []*item, ids idSet, present map[docRef]bool) error {
	// Every document written here gets its dangling references anew: the
	// records of its previous version go first.
	written := make([]state.DocRef, len(winners))
	for i, it := range winners {
		written[i] = state.DocRef{Collection: it.mapping.Collection, Key: it.docKey}
	}
	state.QueueForgetDangling(b, written)
	rows := &rowBuilder{ids: ids, present: present, byMapping: map[*transform.Mapping]*tableWrites{}}
	for _, it := range winners {
		if err := rows.add(it); err != nil {
			return err
		}
	}
	for _, w := range rows.tables {
		if err := a.queueTable(ctx, tx, b, w); err != nil {
			return err
		}
	}
	state.QueueRecordDangling(b, rows.dangling)
	a.queueFillIns(b, winners)
	return nil
}

// table is m's share of the batch, created on first use.
func (rb *rowBuilder) table(m *transform.Mapping) *tableWrites {
	w, ok := rb.byMapping[m]
	if !ok {
		w = &tableWrites{m: m}
		rb.byMapping[m] = w
		rb.tables = append(rb.tables, w)
	}
	return w
}

// add takes one winner: its delete, or its row and child rows with their
// references resolved.
func (rb *rowBuilder) add(it *item) error {
	m := it.mapping
	w := rb.table(m)
	id, err := rb.ids.rowID(it)
	if err != nil {
		return err
	}
	if it.ev.Op == event.OpDelete {
		if id == nil {
			return nil // never replicated: nothing to delete; the tombstone is recorded
		}
		w.delIDs = append(w.delIDs, textOf(id))
		if m.Delete == "soft" {
			at := deleteTime(it.ev).Format(time.RFC3339Nano)
			w.delAt = append(w.delAt, &at)
		}
		return nil
	}
	row := make([]*string, len(m.Columns)+1)
	row[0] = textOf(id)
	for i, v := range it.row.Values {
		row[i+1] = textOf(v)
	}
	for _, ref := range it.row.Refs {
		if err := rb.ref(it, ref, row, ref.Col+1, false); err != nil {
			return err
		}
	}
	w.upserts = append(w.upserts, row)
	return rb.children(it, w, row[0])
}

// children adds it's child rows (parent: its row's id) to w.
func (rb *rowBuilder) children(it *item, w *tableWrites, parent *string) error {
	for ci, cs := range it.row.Children {
		for len(w.children) <= ci {
			w.children = append(w.children, &childWrites{})
		}
		cw := w.children[ci]
		cw.set = cs
		cw.parents = append(cw.parents, parent)
		for _, cr := range cs.Rows {
			crow := make([]*string, len(cs.Columns)+1)
			crow[0] = parent
			for i, v := range cr.Values {
				crow[i+1] = textOf(v)
			}
			for _, ref := range cr.Refs {
				if err := rb.ref(it, ref, crow, ref.Col+1, true); err != nil {
					return err
				}
			}
			cw.rows = append(cw.rows, crow)
		}
	}
	return nil
}

// ref writes the parent id of ref into dst[col] when the parent is there
// (or minted); otherwise policy null writes NULL and records the dangling
// reference, and any other policy rejects the event.
func (rb *rowBuilder) ref(it *item, ref transform.Ref, dst []*string, col int, child bool) error {
	m := it.mapping
	parent, mapped := rb.ids.get(ref.Collection, ref.LegacyID)
	if mapped && (ref.Missing == transform.MissingMint || rb.present[docRef{ref.Collection, ref.LegacyID}]) {
		dst[col] = textOf(parent)
		return nil
	}
	if ref.Missing == transform.MissingNull {
		dst[col] = nil
		name := ref.Column
		if child {
			// One record per child row: the field path holds the
			// array position (deliveryInfo.attempts.1.sellerId).
			name = ref.Field
		}
		d := state.Dangling{Doc: state.DocRef{Collection: m.Collection, Key: it.docKey}, Column: name,
			RefCollection: ref.Collection, RefLegacyID: ref.LegacyID}
		if child {
			d.Event = it.raw // child references keep their version's envelope
		}
		rb.dangling = append(rb.dangling, d)
		return nil
	}
	return &transform.Rejection{Collection: m.Collection, Field: ref.Field, Column: ref.Column, Value: ref.LegacyID,
		Reason: fmt.Sprintf("references %s %s, which has no row (policy %s)", ref.Collection, ref.LegacyID, ref.Missing)}
}

// queueTable adds w's statements to b: child rows of hard-deleted
// parents, the deletes, the upserts (with an append-only mapping's
// divergence check) and the child sets.
func (a *Applier) queueTable(ctx context.Context, tx pgx.Tx, b *pgx.Batch, w *tableWrites) error {
	m := w.m
	types, err := a.types.get(ctx, tx, m.Table)
	if err != nil {
		return err
	}
	cols := m.ColumnNames()
	table := pgx.Identifier(strings.Split(m.Table, ".")).Sanitize()
	idCol := pgx.Identifier{m.ID.Column}.Sanitize()
	idType := types[m.ID.Column]
	if len(w.delIDs) > 0 && m.Delete != "soft" {
		// A hard delete takes the parent's child rows with it, last
		// declared first.
		kids := m.ChildTables()
		for i := len(kids) - 1; i >= 0; i-- {
			ct := kids[i]
			ctypes, err := a.types.get(ctx, tx, ct.Table)
			if err != nil {
				return err
			}
			b.Queue(fmt.Sprintf(`DELETE FROM %s WHERE %s = ANY($1::text[]::%s[])`,
				pgx.Identifier(strings.Split(ct.Table, ".")).Sanitize(), pgx.Identifier{ct.ParentColumn}.Sanitize(), ctypes[ct.ParentColumn]), w.delIDs)
		}
	}
	if len(w.delIDs) > 0 {
		if m.Delete == "soft" {
			b.Queue(fmt.Sprintf(`UPDATE %s t SET %s = u.at::timestamptz FROM unnest($1::text[], $2::text[]) AS u(id, at) WHERE t.%s = u.id::%s`,
				table, pgx.Identifier{m.SoftDeleteColumn}.Sanitize(), idCol, idType), w.delIDs, w.delAt)
		} else {
			b.Queue(fmt.Sprintf(`DELETE FROM %s WHERE %s = ANY($1::text[]::%s[])`, table, idCol, idType), w.delIDs)
		}
	}
	if len(w.upserts) > 0 {
		q := b.Queue(upsertSQL(m, table, cols, types), columns(w.upserts, len(cols))...)
		if m.AppendOnly && len(cols) > 1 {
			q.Query(divergent(m))
		}
	}
	for _, cw := range w.children {
		if err := a.queueChildren(ctx, tx, b, cw); err != nil {
			return err
		}
	}
	return nil
}

// upsertSQL is the set-based insert-or-update of m's rows.
func upsertSQL(m *transform.Mapping, table string, cols []string, types map[string]string) string {
	quoted := make([]string, len(cols))
	params := make([]string, len(cols))
	casts := make([]string, len(cols))
	var sets []string
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
		params[i] = fmt.Sprintf("$%d::text[]", i+1)
		casts[i] = fmt.Sprintf("u.c%d::%s", i, types[c])
		if i > 0 {
			sets = append(sets, fmt.Sprintf("%s = EXCLUDED.%s", quoted[i], quoted[i]))
		}
	}
	if m.Delete == "soft" {
		sets = append(sets, pgx.Identifier{m.SoftDeleteColumn}.Sanitize()+" = NULL")
	}
	aliases := make([]string, len(cols))
	for i := range cols {
		aliases[i] = fmt.Sprintf("c%d", i)
	}
	if m.AppendOnly && len(cols) > 1 {
		return appendOnlySQL(table, quoted, casts, params, aliases)
	}
	conflict := "DO NOTHING"
	if !m.AppendOnly && len(sets) > 0 {
		conflict = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM unnest(%s) AS u(%s) ON CONFLICT (%s) %s",
		table, strings.Join(quoted, ", "), strings.Join(casts, ", "), strings.Join(params, ", "),
		strings.Join(aliases, ", "), quoted[0], conflict)
}

// appendOnlySQL inserts an append-only mapping's rows (an existing row is
// never changed: ON CONFLICT DO NOTHING) and returns the ids of the rows
// that already existed with other values. The statement's own query sees
// the table as it was before the statement, so the rows it compares are
// exactly those that were there already: a snapshot or refresh of a
// ledger document that Mongo now holds differently (the ledger was
// changed behind the application's back, or the row was) is then a
// violation, not a silent "applied" (divergent, below). Values compare
// with the column types' equality (1.50 = 1.5 in numeric; jsonb ignores
// key order), so only a different value diverges. The existing rows are
// read by one probe per key (package state, "Keyed lookups"): a join
// could be planned as a scan of the whole ledger.
func appendOnlySQL(table string, quoted, casts, params, aliases []string) string {
	typed := make([]string, len(quoted))
	var tCols, uCols []string
	for i, c := range casts {
		typed[i] = fmt.Sprintf("%s AS %s", c, quoted[i])
		if i > 0 {
			tCols = append(tCols, "t."+quoted[i])
			uCols = append(uCols, "n."+quoted[i])
		}
	}
	return fmt.Sprintf(`WITH n AS (SELECT %s FROM unnest(%s) AS u(%s)),
ins AS (INSERT INTO %s (%s) SELECT %s FROM n ON CONFLICT (%s) DO NOTHING)
SELECT n.%s::text FROM n CROSS JOIN LATERAL (SELECT * FROM %s t WHERE t.%s = n.%s LIMIT 1) AS t
WHERE (%s) IS DISTINCT FROM (%s)`,
		strings.Join(typed, ", "), strings.Join(params, ", "), strings.Join(aliases, ", "),
		table, strings.Join(quoted, ", "), strings.Join(quoted, ", "), quoted[0],
		quoted[0], table, quoted[0], quoted[0], strings.Join(tCols, ", "), strings.Join(uCols, ", "))
}

// divergent reads appendOnlySQL's answer: any row id returned is a
// *divergenceError (poison, dead-lettered as a violation by the apply
// path's isolation, which applies the batch again unit by unit).
func divergent(m *transform.Mapping) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("append-only insert into %s: %w", m.Table, err)
		}
		if len(ids) > 0 {
			return &divergenceError{violationError{msg: fmt.Sprintf(
				"append-only violation: %s row %s exists with other values than this %s document now has in MongoDB; the row is kept as it was (a ledger entry is never rewritten): compare the two and correct the source or `cdc dlq drop --reason`",
				m.Table, strings.Join(ids, ", "), m.Collection)}}
		}
		return nil
	}
}

// columns turns row-major text values into one []*string per column.
// Columns are pgtype.FlatArray[pgtype.Text]: pgx encodes that without
// reflection (a []*string goes through its reflective slice plan).
func columns(rows [][]*string, n int) []any {
	out := make([]any, n)
	for c := 0; c < n; c++ {
		col := make(pgtype.FlatArray[pgtype.Text], len(rows))
		for r, row := range rows {
			if v := row[c]; v != nil {
				col[r] = pgtype.Text{String: *v, Valid: true}
			}
		}
		out[c] = col
	}
	return out
}

// textOf renders a transformed value in the text form Postgres parses for
// its column type; nil is NULL.
func textOf(v any) *string {
	var s string
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		s = x
	case bool:
		s = strconv.FormatBool(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case int32:
		s = strconv.FormatInt(int64(x), 10)
	case int:
		s = strconv.Itoa(x)
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		s = x.UTC().Format("2006-01-02T15:04:05.999999Z07:00")
	case uuid.UUID:
		s = x.String()
	case []string:
		s = arrayLiteral(x)
	default:
		s = fmt.Sprint(x)
	}
	return &s
}

// arrayLiteral is the Postgres text form of a text[]: every element
// double-quoted, backslashes and quotes escaped.
func arrayLiteral(xs []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(x); j++ {
			if x[j] == '"' || x[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(x[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// queueChildren replaces the child rows of every parent in cw: delete the
// stored set, insert the new one.
func (a *Applier) queueChildren(ctx context.Context, tx pgx.Tx, b *pgx.Batch, cw *childWrites) error {
	cs := cw.set
	types, err := a.types.get(ctx, tx, cs.Table)
	if err != nil {
		return err
	}
	table := pgx.Identifier(strings.Split(cs.Table, ".")).Sanitize()
	parentCol := pgx.Identifier{cs.ParentColumn}.Sanitize()
	b.Queue(fmt.Sprintf(`DELETE FROM %s WHERE %s = ANY($1::text[]::%s[])`, table, parentCol, types[cs.ParentColumn]), cw.parents)
	if len(cw.rows) == 0 {
		return nil
	}
	cols := append([]string{cs.ParentColumn}, cs.Columns...)
	quoted := make([]string, len(cols))
	params := make([]string, len(cols))
	casts := make([]string, len(cols))
	aliases := make([]string, len(cols))
	for i, c := range cols {
		t, ok := types[c]
		if !ok {
			return fault.Fatal.Errorf("child table %s has no column %s", cs.Table, c)
		}
		quoted[i] = pgx.Identifier{c}.Sanitize()
		params[i] = fmt.Sprintf("$%d::text[]", i+1)
		casts[i] = fmt.Sprintf("u.c%d::%s", i, t)
		aliases[i] = fmt.Sprintf("c%d", i)
	}
	b.Queue(fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM unnest(%s) AS u(%s)", table, strings.Join(quoted, ", "),
		strings.Join(casts, ", "), strings.Join(params, ", "), strings.Join(aliases, ", ")), columns(cw.rows, len(cols))...)
	return nil
}
