package sink

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// References left NULL (policy null) wait in cdc.dangling_refs for their
// parent; the batch that writes the parent fills them in, in the same
// transaction: columns of parent tables by one UPDATE per referencing
// column (queueFillIns), references inside child tables by re-applying
// the referencing document's child sets from the envelope kept with the
// record (refillChildren).

// filler is a column that references another collection with policy null:
// NULL-ed values wait in cdc.dangling_refs for their parent.
type filler struct {
	m      *transform.Mapping
	column string
}

// fillers indexes the null-policy reference columns by the collection they
// reference.
func fillers(set *transform.Set) map[string][]filler {
	out := map[string][]filler{}
	for _, m := range set.Mappings() {
		for _, c := range m.Columns {
			if c.Type == transform.TypeRef && c.Ref != nil && c.Ref.Missing == transform.MissingNull {
				out[c.Ref.Collection] = append(out[c.Ref.Collection], filler{m: m, column: c.Column})
			}
		}
	}
	return out
}

// queueFillIns fills in references left NULL for parents this batch
// writes, and removes their dangling records, in the same transaction.
// References inside child tables stay recorded (their row identity is not
// kept); re-applying the referencing document fills them.
func (a *Applier) queueFillIns(b *pgx.Batch, winners []*item) {
	parents := map[string][]string{}
	for _, it := range winners {
		if it.ev.Op != event.OpDelete && len(a.fill[it.mapping.Collection]) > 0 {
			parents[it.mapping.Collection] = append(parents[it.mapping.Collection], it.docKey)
		}
	}
	for coll, keys := range parents {
		for _, f := range a.fill[coll] {
			state.QueueFillDangling(b, state.FillIn{Table: f.m.Table, Column: f.column, IDColumn: f.m.ID.Column,
				IDIsText: f.m.ID.Type == "text", Collection: f.m.Collection, RefCollection: coll}, keys)
		}
	}
}

// refillChildren re-applies the child rows of documents whose references
// inside child tables waited (NULL, policy null) for a parent that the
// batch just wrote: their latest version's envelope was kept with the
// record, so its child sets are written again, now with the parent's id.
// Their rows are re-written with the same values; the version guard is
// not consulted (it is the version already applied).
func (a *Applier) refillChildren(ctx context.Context, tx pgx.Tx, winners []*item, present map[docRef]bool) error {
	var colls, keys []string
	for _, it := range winners {
		if it.ev.Op != event.OpDelete && a.childFill[it.mapping.Collection] {
			colls, keys = append(colls, it.mapping.Collection), append(keys, it.docKey)
		}
	}
	if len(colls) == 0 {
		return nil
	}
	parents := make([]state.DocRef, len(colls))
	for i := range colls {
		parents[i] = state.DocRef{Collection: colls[i], Key: keys[i]}
	}
	envs, err := state.DanglingChildEvents(ctx, tx, parents)
	if err != nil {
		return err
	}
	var items []*item
	for _, env := range envs {
		it := decode(a.set, 0, env)
		if it.reject != nil || it.row == nil {
			continue // it mapped once; a changed mapping leaves the record for verify to report
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return nil
	}
	st, err := a.refState(ctx, tx, []*unit{{items: items}}, false)
	if err != nil {
		return err
	}
	now := make(map[docRef]bool, len(present)+len(st.rows))
	for k := range present {
		now[k] = true
	}
	for k := range st.rows {
		now[k] = true
	}
	ids, err := resolveIDs(ctx, tx, items)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	if err := a.queueWrites(ctx, tx, b, items, ids, now); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("refill child references: %w", err)
	}
	return nil
}

// childFillers lists the collections that child-table references with
// policy null point at.
func childFillers(set *transform.Set) map[string]bool {
	out := map[string]bool{}
	for _, m := range set.Mappings() {
		for _, ch := range m.Children {
			for _, c := range ch.Columns {
				if c.Type == transform.TypeRef && c.Ref != nil && c.Ref.Missing == transform.MissingNull {
					out[c.Ref.Collection] = true
				}
			}
		}
	}
	return out
}
