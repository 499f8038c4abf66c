package sink

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// A reference points at a parent document. The parent is "there" when its
// row exists (through id_map) or when the same batch writes it. A missing
// parent follows the column's policy:
//
//   - mint: the parent's id_map entry is minted and the reference written;
//     the (deferred) FK then needs the parent's row by commit.
//   - null: NULL is written and the reference recorded in
//     cdc.dangling_refs.
//   - reject: the event is dead-lettered with the field and the reason.
//   - wait: the event's unit is set aside, not applied and not
//     acknowledged, and offered again with later batches until the parent
//     appears or Ref.Wait runs out; then it is dead-lettered. The pipeline
//     never stops for it.

// refsOf lists every reference of an item's row, children included.
func refsOf(it *item) []transform.Ref {
	if it.row == nil {
		return nil
	}
	refs := append([]transform.Ref(nil), it.row.Refs...)
	for _, cs := range it.row.Children {
		for _, r := range cs.Rows {
			refs = append(refs, r.Refs...)
		}
	}
	return refs
}

// refState is what the reference checks of one batch know.
type refState struct {
	// rows are referenced parents whose row exists in Postgres now.
	rows map[docRef]bool
	// stale items are at or behind their document's stored version: the
	// guard will skip them, so their references do not matter.
	stale map[*item]bool
}

// loadRefState reads, for the items that carry references needing a
// parent (any policy but mint), their documents' stored versions and the
// referenced parents' rows.
func (a *Applier) loadRefState(ctx context.Context, tx pgx.Tx, units []*unit) (*refState, error) {
	return a.refState(ctx, tx, units, true)
}

// refState is loadRefState; with versions false every item counts as
// current (a refill re-applies the version already stored).
func (a *Applier) refState(ctx context.Context, tx pgx.Tx, units []*unit, versions bool) (*refState, error) {
	st := &refState{rows: map[docRef]bool{}, stale: map[*item]bool{}}
	var withRefs []*item
	for _, u := range units {
		for _, it := range u.items {
			for _, r := range refsOf(it) {
				if r.Missing != transform.MissingMint {
					withRefs = append(withRefs, it)
					break
				}
			}
		}
	}
	if len(withRefs) == 0 {
		return st, nil
	}
	colls, keys := make([]string, len(withRefs)), make([]string, len(withRefs))
	for i, it := range withRefs {
		colls[i], keys[i] = it.mapping.Collection, it.docKey
	}
	stored := map[docRef]event.Position{}
	if versions {
		if err := readVersions(ctx, tx, colls, keys, stored); err != nil {
			return nil, err
		}
	}
	// Each parent is looked up once, however many references it has.
	want, seen := map[string][]string{}, map[docRef]bool{}
	for _, it := range withRefs {
		if p, ok := stored[docRef{it.mapping.Collection, it.docKey}]; ok && it.ev.Position().Compare(p) <= 0 {
			st.stale[it] = true
			continue
		}
		for _, r := range refsOf(it) {
			if k := (docRef{r.Collection, r.LegacyID}); r.Missing != transform.MissingMint && !seen[k] {
				seen[k] = true
				want[r.Collection] = append(want[r.Collection], r.LegacyID)
			}
		}
	}
	for coll, ids := range want {
		var rows pgx.Rows
		var err error
		if m, ok := a.set.Get(coll); ok && m.ID.Type == "uuid" {
			table := pgx.Identifier(strings.Split(m.Table, ".")).Sanitize()
			// One index probe per key: package state, "Keyed lookups".
			rows, err = tx.Query(ctx, fmt.Sprintf(`SELECT k.id FROM unnest($2::text[]) AS k(id)
				CROSS JOIN LATERAL (SELECT 1 FROM id_map m JOIN %s p ON p.%s = m.new_id
					WHERE m.collection = $1 AND m.legacy_object_id = k.id LIMIT 1) AS x`, table, pgx.Identifier{m.ID.Column}.Sanitize()), coll, ids)
		} else {
			// A collection this replicator does not map: id_map is all
			// there is to know.
			rows, err = tx.Query(ctx, `SELECT k.id FROM unnest($2::text[]) AS k(id)
				CROSS JOIN LATERAL (SELECT 1 FROM id_map m WHERE m.collection = $1 AND m.legacy_object_id = k.id LIMIT 1) AS x`, coll, ids)
		}
		if err != nil {
			return nil, fmt.Errorf("parent rows of %s: %w", coll, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("parent rows of %s: %w", coll, err)
			}
			st.rows[docRef{coll, id}] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("parent rows of %s: %w", coll, err)
		}
	}
	return st, nil
}

// resolveRefs splits units into those that apply now, those that wait for
// a parent and those rejected for one. A parent is present when its row
// exists or a unit that applies in this batch writes it; a unit that waits
// or is rejected writes nothing, so the split is repeated until it stops
// changing. The returned set is the final notion of present.
func (a *Applier) resolveRefs(st *refState, units []*unit) (ok, waiting, rejected []*unit, present map[docRef]bool) {
	firstSeen := func(u *unit) time.Time {
		if u.firstSeen.IsZero() {
			u.firstSeen = a.now()
		}
		return u.firstSeen
	}
	ok = units
	for {
		present = make(map[docRef]bool, len(st.rows))
		for k := range st.rows {
			present[k] = true
		}
		// The newest event of each document among the units that apply
		// decides whether the batch leaves it written.
		newest := map[docRef]*item{}
		for _, u := range ok {
			for _, it := range u.items {
				if it.mapping == nil || it.noop {
					continue
				}
				k := docRef{it.mapping.Collection, it.docKey}
				if prev, seen := newest[k]; !seen || it.ev.Position().Compare(prev.ev.Position()) > 0 {
					newest[k] = it
				}
			}
		}
		for k, it := range newest {
			if it.row != nil && it.ev.Op != event.OpDelete && !st.stale[it] {
				present[k] = true
			}
		}
		next, w, r := checkRefs(ok, present, a.now(), firstSeen, st.stale)
		waiting, rejected = append(waiting, w...), append(rejected, r...)
		if len(next) == len(ok) {
			return next, waiting, rejected, present
		}
		ok = next
	}
}

// checkRefs applies the reject and wait policies to units whose parents
// are missing: it returns the units that can apply now, those that wait,
// and marks rejected ones (they go to the dead letters). Stale items are
// not checked: the version guard skips them.
func checkRefs(units []*unit, present map[docRef]bool, now time.Time, firstSeen func(*unit) time.Time, stale map[*item]bool) (ok, waiting, rejected []*unit) {
next:
	for _, u := range units {
		for _, it := range u.items {
			if stale[it] {
				continue
			}
			for _, r := range refsOf(it) {
				if present[docRef{r.Collection, r.LegacyID}] {
					continue
				}
				switch r.Missing {
				case transform.MissingReject:
					it.reject = &transform.Rejection{Collection: it.mapping.Collection, Field: r.Field, Column: r.Column, Value: r.LegacyID,
						Reason: fmt.Sprintf("references %s %s, which has no row (policy reject)", r.Collection, r.LegacyID)}
					rejected = append(rejected, u)
					continue next
				case transform.MissingWait:
					deadline := firstSeen(u).Add(r.Wait)
					if now.After(deadline) {
						it.reject = &transform.Rejection{Collection: it.mapping.Collection, Field: r.Field, Column: r.Column, Value: r.LegacyID,
							Reason: fmt.Sprintf("references %s %s, which did not appear within %s (policy wait)", r.Collection, r.LegacyID, r.Wait)}
						rejected = append(rejected, u)
					} else {
						waiting = append(waiting, u)
					}
					continue next
				}
			}
		}
		ok = append(ok, u)
	}
	return ok, waiting, rejected
}

// readVersions fills stored with the version guard's positions of the
// given documents.
func readVersions(ctx context.Context, tx pgx.Tx, colls, keys []string, stored map[docRef]event.Position) error {
	docs := make([]state.DocRef, len(colls))
	for i := range colls {
		docs[i] = state.DocRef{Collection: colls[i], Key: keys[i]}
	}
	got, err := state.ReadVersions(ctx, tx, docs)
	if err != nil {
		return err
	}
	for d, p := range got {
		stored[docRef{d.Collection, d.Key}] = p
	}
	return nil
}
