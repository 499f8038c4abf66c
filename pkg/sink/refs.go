package sink

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
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

// waitingError is a unit whose parent has not arrived yet.
type waitingError struct {
	ref      transform.Ref
	deadline time.Time
}

func (e *waitingError) Error() string {
	return fmt.Sprintf("waiting for %s %s (field %s, until %s)", e.ref.Collection, e.ref.LegacyID, e.ref.Field, e.deadline.Format(time.RFC3339))
}

// presentParents returns which referenced parents have a row now or are
// written by units; it reads id_map joined with each parent table.
func (a *Applier) presentParents(ctx context.Context, tx pgx.Tx, units []*unit) (map[docRef]bool, error) {
	present := map[docRef]bool{}
	want := map[string][]string{}
	for _, u := range units {
		for _, it := range u.items {
			if it.row != nil && it.ev.Op != event.OpDelete {
				present[docRef{it.mapping.Collection, it.docKey}] = true
			}
		}
	}
	for _, u := range units {
		for _, it := range u.items {
			for _, r := range refsOf(it) {
				k := docRef{r.Collection, r.LegacyID}
				if r.Missing != transform.MissingMint && !present[k] {
					want[r.Collection] = append(want[r.Collection], r.LegacyID)
				}
			}
		}
	}
	for coll, ids := range want {
		var rows pgx.Rows
		var err error
		if m, ok := a.set.Get(coll); ok && m.ID.Type == "uuid" {
			table := pgx.Identifier(strings.Split(m.Table, ".")).Sanitize()
			rows, err = tx.Query(ctx, fmt.Sprintf(`SELECT m.legacy_object_id FROM id_map m
				JOIN %s p ON p.%s = m.new_id
				WHERE m.collection = $1 AND m.legacy_object_id = ANY($2)`, table, pgx.Identifier{m.ID.Column}.Sanitize()), coll, ids)
		} else {
			// A collection this replicator does not map: id_map is all
			// there is to know.
			rows, err = tx.Query(ctx, `SELECT legacy_object_id FROM id_map WHERE collection = $1 AND legacy_object_id = ANY($2)`, coll, ids)
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
			present[docRef{coll, id}] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("parent rows of %s: %w", coll, err)
		}
	}
	return present, nil
}

// checkRefs applies the reject and wait policies to units whose parents
// are missing: it returns the units that can apply now, those that wait,
// and marks rejected ones (they go to the dead letters).
func checkRefs(units []*unit, present map[docRef]bool, now time.Time, firstSeen func(*unit) time.Time) (ok, waiting, rejected []*unit) {
next:
	for _, u := range units {
		for _, it := range u.items {
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
