package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/state"
)

type docRef struct{ coll, key string }

// applyUnits writes units inside tx: the newest event of each document,
// where the version guard lets it, with its id_map entries, rows and
// dangling references. Any error leaves tx to be rolled back (or rolled
// back to its savepoint) by the caller.
func (a *Applier) applyUnits(ctx context.Context, tx pgx.Tx, units []*unit, present map[docRef]bool) (Result, error) {
	res := Result{ByCollection: map[string]int{}}
	latest, order := newestPerDoc(units, &res)
	if len(order) == 0 {
		return res, nil
	}
	winners, err := guardVersions(ctx, tx, latest, order, &res)
	if err != nil || len(winners) == 0 {
		return res, err
	}
	if err := a.writeRows(ctx, tx, winners, present); err != nil {
		return res, err
	}
	if err := a.refill(ctx, tx, winners, present, &res); err != nil {
		return res, err
	}
	for _, it := range winners {
		res.count(it, OutcomeApplied)
		if ct := it.ev.Source.ClusterTime; ct.Compare(res.LastClusterTime) > 0 {
			res.LastClusterTime = ct
		}
	}
	return res, nil
}

// newestPerDoc returns the newest effective event per document, and the
// documents in first-seen order: the final state of a document within one
// Postgres transaction depends only on it. No-ops and superseded events
// are counted skipped in res.
func newestPerDoc(units []*unit, res *Result) (map[docRef]*item, []docRef) {
	latest := map[docRef]*item{}
	var order []docRef
	for _, u := range units {
		for _, it := range u.items {
			if it.noop {
				res.count(it, OutcomeSkipped)
				continue
			}
			k := docRef{it.mapping.Collection, it.docKey}
			prev, ok := latest[k]
			if !ok {
				order = append(order, k)
				latest[k] = it
				continue
			}
			if c := it.ev.Position().Compare(prev.ev.Position()); c > 0 || (c == 0 && it.seq > prev.seq) {
				latest[k] = it
				res.count(prev, OutcomeSkipped)
			} else {
				res.count(it, OutcomeSkipped)
			}
		}
	}
	return latest, order
}

// guardVersions is the version guard: it advances the stored position
// only where the document's newest event is newer, and returns those
// events (only their documents are written); the others are counted
// skipped in res.
func guardVersions(ctx context.Context, tx pgx.Tx, latest map[docRef]*item, order []docRef, res *Result) ([]*item, error) {
	vs := make([]state.Version, len(order))
	for i, k := range order {
		it := latest[k]
		vs[i] = state.Version{Doc: state.DocRef{Collection: k.coll, Key: k.key}, Position: it.ev.Position(), Deleted: it.ev.Op == event.OpDelete}
	}
	won, err := state.AdvanceVersions(ctx, tx, vs)
	if err != nil {
		return nil, err
	}
	var winners []*item
	for _, k := range order {
		if won[state.DocRef{Collection: k.coll, Key: k.key}] {
			winners = append(winners, latest[k])
		} else {
			res.count(latest[k], OutcomeSkipped)
		}
	}
	return winners, nil
}

// writeRows resolves the winners' ids (idmap.go) and sends their row
// statements (write.go) in one round trip.
func (a *Applier) writeRows(ctx context.Context, tx pgx.Tx, winners []*item, present map[docRef]bool) error {
	ids, err := resolveIDs(ctx, tx, winners)
	if err != nil {
		return err
	}
	batch := &pgx.Batch{}
	if err := a.queueWrites(ctx, tx, batch, winners, ids, present); err != nil {
		return err
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("apply rows: %w", err)
		}
	}
	return nil
}

// refill re-applies the child rows that waited for the winners
// (refillChildren). A refill that fails must not fail the parents that
// triggered it: it runs in a savepoint, and its records stay in
// cdc.dangling_refs (reported by verify) when it is rolled back, with the
// reason in res.RefillError.
func (a *Applier) refill(ctx context.Context, tx pgx.Tx, winners []*item, present map[docRef]bool, res *Result) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if rerr := a.refillChildren(ctx, sp, winners, present); rerr != nil {
		if Classify(rerr) != fault.Poison {
			return rerr
		}
		if err := sp.Rollback(ctx); err != nil {
			return fmt.Errorf("rollback refill: %w", err)
		}
		res.RefillError = rerr.Error()
	} else if err := sp.Commit(ctx); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

func deleteTime(ev *event.Event) time.Time {
	if !ev.Source.WallTime.IsZero() {
		return ev.Source.WallTime
	}
	return ev.Source.ClusterTime.Time()
}
