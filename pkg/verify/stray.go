package verify

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
)

// checkStray finds id_map entries that stand for no document: no live
// Mongo document, no tombstone in cdc.doc_versions and no version ever
// recorded there. Such a mapping was made for a document that never
// reached the replicator (a backfill's or the dual-write's mistake, a
// hand-made entry), and a later document with that _id would silently
// take its uuid. Mappings of documents the replicator has seen always have
// a version: the sink writes both in one transaction, and tombstones
// stay.
const checkStray = "idmap_stray"

// strayCheck pages through the collection's id_map entries in key order.
// Entries without a version are looked up in Mongo; those without a live
// document are looked up in cdc.doc_versions once more after the sink has
// consumed every change up to the Mongo read (a delete in flight writes
// its tombstone then), and only those still without one are reported.
func (v *Verifier) strayCheck(ctx context.Context, plan *mappingPlan, ch *Check) error {
	coll := plan.m.Collection
	ch.Counts["entries"], ch.Counts["stray"] = 0, 0
	if !plan.uuidID {
		ch.note("ids are text (id.type text): the collection has no id_map entries")
		return nil
	}
	n := v.cfg.ChunkSize
	after, first := "", true
	for {
		page, err := v.pg.idmapEntries(ctx, coll, after, first, n)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		after, first = page[len(page)-1].key, false
		ch.Counts["entries"] += int64(len(page))
		unversioned, err := v.withoutVersion(ctx, coll, page)
		if err != nil {
			return err
		}
		if len(unversioned) > 0 {
			if err := v.settleStray(ctx, coll, unversioned, ch); err != nil {
				return err
			}
		}
		if len(page) < n {
			return nil
		}
	}
}

// withoutVersion returns the entries whose document has no row in
// cdc.doc_versions.
func (v *Verifier) withoutVersion(ctx context.Context, coll string, entries []keyRow) ([]keyRow, error) {
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.key
	}
	qctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
	versions, err := state.DocVersions(qctx, v.pg.pool, coll, keys)
	cancel()
	if err != nil {
		return nil, pgErr("read the versions of "+coll, err)
	}
	var out []keyRow
	for _, e := range entries {
		if _, ok := versions[e.key]; !ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// settleStray reports the candidates that have no live Mongo document and,
// once the sink has passed the Mongo read, still no version.
func (v *Verifier) settleStray(ctx context.Context, coll string, cand []keyRow, ch *Check) error {
	var ids []any
	for _, c := range cand {
		ids = append(ids, keyIDs(c.key)...)
	}
	docs, _, hi, err := v.mongo.byIDs(ctx, coll, ids, true)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, raw := range docs {
		live[event.KeyString(raw.Lookup("_id"))] = true
	}
	var gone []keyRow
	for _, c := range cand {
		if !live[c.key] {
			gone = append(gone, c)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	caughtUp, err := v.waitPassed(ctx, hi, time.Time{})
	if err != nil {
		return err
	}
	still, err := v.withoutVersion(ctx, coll, gone)
	if err != nil {
		return err
	}
	for _, e := range still {
		ch.Counts["stray"]++
		detail := "id_map entry for a document with no live Mongo document, no tombstone and no version ever recorded in cdc.doc_versions: it maps a document the replicator never saw"
		if !caughtUp {
			detail += " (re-checked after " + v.cfg.RecheckWait.String() + " without the sink catching up with the Mongo read)"
		}
		ch.mismatch(Example{ID: e.key, PGID: e.newID, Table: "id_map", Detail: detail})
	}
	return nil
}

// idmapEntries returns the next page of the collection's id_map entries
// in key order after `after`.
func (p *pgSide) idmapEntries(ctx context.Context, coll, after string, first bool, n int) ([]keyRow, error) {
	return p.keyRows(ctx, `SELECT legacy_object_id, new_id::text FROM id_map
		WHERE collection = $1 AND ($4 OR legacy_object_id > $2) ORDER BY legacy_object_id LIMIT $3`,
		"read the id_map entries of "+coll, coll, after, n, first)
}

// enumLabels returns the labels of the enum type of table.column (none:
// the column is not an enum).
func (p *pgSide) enumLabels(ctx context.Context, table, column string) (map[string]bool, error) {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	rows, err := p.pool.Query(qctx, `SELECT e.enumlabel FROM pg_attribute a JOIN pg_enum e ON e.enumtypid = a.atttypid
		WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`, quoteTable(table), column)
	if err != nil {
		return nil, pgErr("read the enum labels of "+table+"."+column, err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var l pgtype.Text
		if err := rows.Scan(&l); err != nil {
			return nil, pgErr("read the enum labels of "+table+"."+column, err)
		}
		out[l.String] = true
	}
	return out, pgErr("read the enum labels of "+table+"."+column, rows.Err())
}
