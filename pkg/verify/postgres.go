package verify

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/amanat/cdc/pkg/state"
)

// pgSide reads Postgres. Every read that must be consistent with others
// runs in one REPEATABLE READ, READ ONLY transaction (one snapshot).
type pgSide struct {
	pool     *pgxpool.Pool
	consumer string
	// consumers are the lanes' consumers with sink lanes (nil: consumer).
	consumers []string
	timeout   time.Duration
}

// snapshot opens a read-only repeatable-read transaction.
func (p *pgSide) snapshot(ctx context.Context) (pgx.Tx, error) {
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, pgErr("begin a read-only snapshot", err)
	}
	return tx, nil
}

// queryer is what the reads need: a pool or a transaction.
type queryer = state.DB

// appliedPosition is the newest cluster time (packed) the sink has
// consumed: the larger of its recorded position and the newest
// dead-lettered event (a dead-lettered event is consumed without moving
// the position). 0 when the sink has consumed nothing. With sink lanes
// (consumers lists every lane's consumer) it is the oldest of the lanes'
// positions that exist: a change is settled only once every lane that
// may carry it has passed it (a Mongo transaction's events all go through
// the lane of its first event, whatever their collection). A lane that
// has applied nothing yet has no row and does not hold the others back;
// an idle lane does, until it applies again (docs/runbook.md).
func (p *pgSide) appliedPosition(ctx context.Context, q queryer) (int64, error) {
	consumers := p.consumers
	if len(consumers) == 0 {
		consumers = []string{p.consumer}
	}
	var pos int64
	found := false
	for _, c := range consumers {
		sp, ok, err := state.ReadPosition(ctx, q, c)
		if err != nil {
			return 0, pgErr("read the sink position", err)
		}
		if !ok {
			continue
		}
		if v := sp.ClusterTime.Pack(); !found || v < pos {
			pos = v
		}
		found = true
	}
	dl, ok, err := state.NewestDeadLetterTime(ctx, q)
	if err != nil {
		return 0, pgErr("read the sink position", err)
	}
	if ok && (len(consumers) == 1 || !found) {
		pos = max(pos, dl.Pack())
	}
	return pos, nil
}

// pgRow is what Postgres holds for one document key.
type pgRow struct {
	key     string
	newID   string // id_map new_id (or the key for text ids); "" when unmapped
	exists  bool   // the row is there
	deleted bool   // soft-deleted
	version int64  // the version guard's cluster time (packed), 0 when none
	tomb    bool   // the version guard says deleted (a tombstone)
	vals    []cval // stored values (references as uuid text), when read with data
	// children has one list of rows per child table.
	children [][][]cval
}

// fetchRows reads the rows of keys: id_map entry, row presence, applied
// version and, with data, the mapped columns and the child rows.
func (p *pgSide) fetchRows(ctx context.Context, q queryer, plan *mappingPlan, keys []string, withData bool) (map[string]*pgRow, error) {
	coll := plan.m.Collection
	query := topRowsSQL(plan, withData)
	// The applied versions come from the same snapshot (q is the
	// caller's read-only transaction).
	versions, err := state.DocVersions(ctx, q, coll, keys)
	if err != nil {
		return nil, pgErr("read the applied versions of "+coll, err)
	}
	rows, err := q.Query(ctx, query, coll, keys)
	if err != nil {
		return nil, pgErr("read rows of "+plan.top.table, err)
	}
	out, parents, err := scanTopRows(rows, plan, keys, withData, versions)
	if err != nil {
		return nil, err
	}
	if !withData || len(plan.children) == 0 || len(parents) == 0 {
		return out, nil
	}
	byID := make(map[string]*pgRow, len(parents))
	for _, r := range out {
		if r.exists {
			r.children = make([][][]cval, len(plan.children))
			byID[r.newID] = r
		}
	}
	for ci := range plan.children {
		if err := readChildRows(ctx, q, plan, ci, parents, byID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// topRowsSQL is the query of fetchRows' top rows ($1 the collection, $2
// the keys): one row per key, whether or not it has an id_map entry or a
// row, so that a missing one is seen as such.
func topRowsSQL(plan *mappingPlan, withData bool) string {
	t := quoteTable(plan.top.table)
	id := quoteIdent(plan.idCol)
	soft := "false"
	if plan.soft != "" {
		soft = "t." + quoteIdent(plan.soft) + " IS NOT NULL"
	}
	var sb strings.Builder
	if plan.uuidID {
		fmt.Fprintf(&sb, `SELECT k.key, m.new_id::text, t.%s IS NOT NULL, coalesce(%s, false)`, id, soft)
	} else {
		fmt.Fprintf(&sb, `SELECT k.key, k.key, t.%s IS NOT NULL, coalesce(%s, false)`, id, soft)
	}
	if withData {
		for _, c := range plan.top.cols {
			sb.WriteString(", " + c.kind.selectExpr("t", c.name))
		}
	}
	sb.WriteString(` FROM unnest($2::text[]) AS k(key)`)
	if plan.uuidID {
		fmt.Fprintf(&sb, ` LEFT JOIN id_map m ON m.collection = $1 AND m.legacy_object_id = k.key LEFT JOIN %s t ON t.%s = m.new_id`, t, id)
	} else {
		fmt.Fprintf(&sb, ` LEFT JOIN %s t ON t.%s = k.key`, t, id)
	}
	return sb.String()
}

// scanTopRows reads the rows of topRowsSQL (and closes them), joining each
// with its applied version; parents are the new ids of the rows that
// exist, whose child rows are read next when there is data.
func scanTopRows(rows pgx.Rows, plan *mappingPlan, keys []string, withData bool, versions map[string]state.Version) (map[string]*pgRow, []string, error) {
	out := make(map[string]*pgRow, len(keys))
	var parents []string
	for rows.Next() {
		r := &pgRow{}
		var newID pgtype.Text
		dest := []any{&r.key, &newID, &r.exists, &r.deleted}
		var ds []any
		if withData {
			ds = make([]any, len(plan.top.cols))
			for i, c := range plan.top.cols {
				ds[i] = c.kind.dest()
			}
			dest = append(dest, ds...)
		}
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return nil, nil, pgErr("read rows of "+plan.top.table, err)
		}
		r.newID = newID.String
		if v, ok := versions[r.key]; ok {
			r.version, r.tomb = v.Position.ClusterTime.Pack(), v.Deleted
		}
		if withData {
			r.vals = make([]cval, len(ds))
			for i, d := range ds {
				r.vals[i] = plan.top.cols[i].kind.stored(d)
			}
			if r.exists {
				parents = append(parents, r.newID)
			}
		}
		out[r.key] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, pgErr("read rows of "+plan.top.table, err)
	}
	return out, parents, nil
}

// readChildRows reads the rows of child table ci under parents in one
// query and files each under its parent row in byID.
func readChildRows(ctx context.Context, q queryer, plan *mappingPlan, ci int, parents []string, byID map[string]*pgRow) error {
	ch := &plan.children[ci]
	var sb strings.Builder
	fmt.Fprintf(&sb, "SELECT c.%s::text", quoteIdent(ch.parentCol))
	for _, c := range ch.cols {
		sb.WriteString(", " + c.kind.selectExpr("c", c.name))
	}
	fmt.Fprintf(&sb, " FROM %s c WHERE c.%s = ANY($1::%s)", quoteTable(ch.table), quoteIdent(ch.parentCol), plan.idArrayType())
	rows, err := q.Query(ctx, sb.String(), parents)
	if err != nil {
		return pgErr("read child rows of "+ch.table, err)
	}
	for rows.Next() {
		var parent string
		ds := make([]any, len(ch.cols))
		for i, c := range ch.cols {
			ds[i] = c.kind.dest()
		}
		if err := rows.Scan(append([]any{&parent}, ds...)...); err != nil {
			rows.Close()
			return pgErr("read child rows of "+ch.table, err)
		}
		vals := make([]cval, len(ds))
		for i, d := range ds {
			vals[i] = ch.cols[i].kind.stored(d)
		}
		if r := byID[parent]; r != nil {
			r.children[ci] = append(r.children[ci], vals)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return pgErr("read child rows of "+ch.table, err)
	}
	return nil
}

// idmapEntry is what a uuid maps back to.
type idmapEntry struct{ coll, legacy string }

// resolveUUIDs maps uuids back to (collection, legacy id) through id_map.
func (p *pgSide) resolveUUIDs(ctx context.Context, q queryer, uuids []string) (map[string]idmapEntry, error) {
	out := map[string]idmapEntry{}
	if len(uuids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT new_id::text, collection, legacy_object_id FROM id_map WHERE new_id = ANY($1::uuid[])`, uuids)
	if err != nil {
		return nil, pgErr("resolve references through id_map", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var e idmapEntry
		if err := rows.Scan(&u, &e.coll, &e.legacy); err != nil {
			return nil, pgErr("resolve references through id_map", err)
		}
		out[u] = e
	}
	return out, pgErr("resolve references through id_map", rows.Err())
}

// presentParents returns which (collection, legacy id) pairs have a row,
// as the sink decides it: an id_map entry joined with the parent's table
// when the collection is mapped, the id_map entry alone otherwise.
func (p *pgSide) presentParents(ctx context.Context, q queryer, plans map[string]*mappingPlan, want map[string][]string) (map[string]bool, error) {
	out := map[string]bool{}
	for coll, ids := range want {
		var rows pgx.Rows
		var err error
		if pp, ok := plans[coll]; ok && pp.uuidID {
			rows, err = q.Query(ctx, fmt.Sprintf(`SELECT m.legacy_object_id FROM id_map m JOIN %s p ON p.%s = m.new_id
				WHERE m.collection = $1 AND m.legacy_object_id = ANY($2)`, quoteTable(pp.top.table), quoteIdent(pp.idCol)), coll, ids)
		} else {
			rows, err = q.Query(ctx, `SELECT legacy_object_id FROM id_map WHERE collection = $1 AND legacy_object_id = ANY($2)`, coll, ids)
		}
		if err != nil {
			return nil, pgErr("look up referenced rows of "+coll, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, pgErr("look up referenced rows of "+coll, err)
			}
			out[coll+"/"+id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, pgErr("look up referenced rows of "+coll, err)
		}
	}
	return out, nil
}

// danglingRecords returns the dangling-reference records of keys, as
// "key/column" -> referenced legacy id.
func (p *pgSide) danglingRecords(ctx context.Context, q queryer, coll string, keys []string) (map[string]string, error) {
	ds, err := state.DanglingRecords(ctx, q, coll, keys)
	if err != nil {
		return nil, pgErr("read the dangling references", err)
	}
	out := make(map[string]string, len(ds))
	for _, d := range ds {
		out[d.Doc.Key+"/"+d.Column] = d.RefLegacyID
	}
	return out, nil
}

// openDeadLetters returns, per key with an open dead letter, its reason.
func (p *pgSide) openDeadLetters(ctx context.Context, q queryer, coll string, keys []string) (map[string]string, error) {
	out, err := state.OpenDeadLetterReasons(ctx, q, coll, keys)
	return out, pgErr("read the dead letters", err)
}

// sumRow is Postgres' sums of one status group.
type sumRow struct {
	status string
	sums   []decimal.Decimal // per money column
	counts []int64
}

// tableSums has Postgres compute, per status, sum(col)::text of every
// money column of table over the rows whose keyCol is in ids (live rows
// only for the parent table).
func (p *pgSide) tableSums(ctx context.Context, q queryer, tp *tablePlan, keyCol, arrayType, live string, ids []string) ([]sumRow, error) {
	if len(tp.money) == 0 || len(ids) == 0 {
		return nil, nil
	}
	status := "''"
	if tp.status >= 0 {
		status = "coalesce(t." + quoteIdent(tp.cols[tp.status].name) + "::text, 'NULL')"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "SELECT %s", status)
	for _, i := range tp.money {
		c := "t." + quoteIdent(tp.cols[i].name)
		fmt.Fprintf(&sb, ", sum(%s)::text, count(%s)", c, c)
	}
	fmt.Fprintf(&sb, " FROM %s t WHERE t.%s = ANY($1::%s) AND %s GROUP BY 1", quoteTable(tp.table), quoteIdent(keyCol), arrayType, live)
	rows, err := q.Query(ctx, sb.String(), ids)
	if err != nil {
		return nil, pgErr("sum money columns of "+tp.table, err)
	}
	defer rows.Close()
	var out []sumRow
	for rows.Next() {
		sr := sumRow{sums: make([]decimal.Decimal, len(tp.money)), counts: make([]int64, len(tp.money))}
		texts := make([]pgtype.Text, len(tp.money))
		dest := []any{&sr.status}
		for i := range tp.money {
			dest = append(dest, &texts[i], &sr.counts[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, pgErr("sum money columns of "+tp.table, err)
		}
		for i, t := range texts {
			if t.Valid {
				d, ok := parseDecimal(t.String)
				if !ok {
					return nil, fmt.Errorf("sum of %s.%s is %q, not a decimal", tp.table, tp.cols[tp.money[i]].name, t.String)
				}
				sr.sums[i] = d
			}
		}
		out = append(out, sr)
	}
	return out, pgErr("sum money columns of "+tp.table, rows.Err())
}

// keyPage is one page of the reverse scan: rows in key order after a key.
type keyRow struct{ key, newID string }

// mappedRows returns the next page of rows that have an id_map entry of
// the collection (all rows for text ids), in key order after `after`.
func (p *pgSide) mappedRows(ctx context.Context, plan *mappingPlan, after string, first bool, n int) ([]keyRow, error) {
	var sql string
	t, id := quoteTable(plan.top.table), quoteIdent(plan.idCol)
	if plan.uuidID {
		sql = fmt.Sprintf(`SELECT m.legacy_object_id, m.new_id::text FROM id_map m JOIN %s t ON t.%s = m.new_id
			WHERE m.collection = $1 AND ($4 OR m.legacy_object_id > $2) AND %s ORDER BY m.legacy_object_id LIMIT $3`, t, id, plan.liveRow("t"))
	} else {
		sql = fmt.Sprintf(`SELECT t.%s::text, t.%s::text FROM %s t WHERE $1::text IS NOT NULL AND ($4 OR t.%s > $2) AND %s ORDER BY t.%s LIMIT $3`,
			id, id, t, id, plan.liveRow("t"), id)
	}
	return p.keyRows(ctx, sql, "read rows of "+plan.top.table, plan.m.Collection, after, n, first)
}

// unmappedRows returns the next page of live rows (uuid ids) without an
// id_map entry of the collection, in id order after `after`.
func (p *pgSide) unmappedRows(ctx context.Context, plan *mappingPlan, after string, first bool, n int) ([]keyRow, error) {
	t, id := quoteTable(plan.top.table), quoteIdent(plan.idCol)
	sql := fmt.Sprintf(`SELECT '', t.%s::text FROM %s t
		WHERE ($4 OR t.%s > $2::uuid) AND %s
		  AND NOT EXISTS (SELECT 1 FROM id_map m WHERE m.new_id = t.%s AND m.collection = $1)
		ORDER BY t.%s LIMIT $3`, id, t, id, plan.liveRow("t"), id, id)
	if first {
		after = "00000000-0000-0000-0000-000000000000"
	}
	return p.keyRows(ctx, sql, "find rows of "+plan.top.table+" without an id_map entry", plan.m.Collection, after, n, first)
}

func (p *pgSide) keyRows(ctx context.Context, sql, what, coll, after string, n int, first bool) ([]keyRow, error) {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	rows, err := p.pool.Query(qctx, sql, coll, after, n, first)
	if err != nil {
		return nil, pgErr(what, err)
	}
	defer rows.Close()
	var out []keyRow
	for rows.Next() {
		var r keyRow
		if err := rows.Scan(&r.key, &r.newID); err != nil {
			return nil, pgErr(what, err)
		}
		out = append(out, r)
	}
	return out, pgErr(what, rows.Err())
}

// countRows counts the live rows of the mapping's table.
func (p *pgSide) countRows(ctx context.Context, q queryer, plan *mappingPlan) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s t WHERE %s`, quoteTable(plan.top.table), plan.liveRow("t"))).Scan(&n)
	return n, pgErr("count rows of "+plan.top.table, err)
}

// lastKey returns the greatest key mappedRows can return (ok false: none).
func (p *pgSide) lastKey(ctx context.Context, plan *mappingPlan) (string, bool, error) {
	var sql string
	if plan.uuidID {
		sql = `SELECT max(legacy_object_id) FROM id_map WHERE collection = $1`
	} else {
		sql = fmt.Sprintf(`SELECT max(t.%s::text) FROM %s t WHERE $1::text IS NOT NULL`, quoteIdent(plan.idCol), quoteTable(plan.top.table))
	}
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var key pgtype.Text
	if err := p.pool.QueryRow(qctx, sql, plan.m.Collection).Scan(&key); err != nil {
		return "", false, pgErr("read the last key of "+plan.top.table, err)
	}
	return key.String, key.Valid, nil
}
