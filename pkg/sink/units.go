package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

type docRef struct{ coll, key string }

// applyUnits writes units inside tx. Any error leaves tx to be rolled back
// (or rolled back to its savepoint) by the caller.
func (a *Applier) applyUnits(ctx context.Context, tx pgx.Tx, units []*unit, present map[docRef]bool) (Result, error) {
	res := Result{ByCollection: map[string]int{}}
	// Newest effective event per document: the final state of a document
	// within one Postgres transaction depends only on it.
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
	if len(order) == 0 {
		return res, nil
	}

	// Version guard: advance the stored position only where this event is
	// newer; only those documents are written.
	vs := make([]state.Version, len(order))
	for i, k := range order {
		it := latest[k]
		vs[i] = state.Version{Doc: state.DocRef{Collection: k.coll, Key: k.key}, Position: it.ev.Position(), Deleted: it.ev.Op == event.OpDelete}
	}
	won, err := state.AdvanceVersions(ctx, tx, vs)
	if err != nil {
		return res, err
	}
	var winners []*item
	for _, k := range order {
		if won[state.DocRef{Collection: k.coll, Key: k.key}] {
			winners = append(winners, latest[k])
		} else {
			res.count(latest[k], OutcomeSkipped)
		}
	}
	if len(winners) == 0 {
		return res, nil
	}

	ids, err := resolveIDs(ctx, tx, winners)
	if err != nil {
		return res, err
	}

	batch := &pgx.Batch{}
	if err := a.queueWrites(ctx, tx, batch, winners, ids, present); err != nil {
		return res, err
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return res, fmt.Errorf("apply rows: %w", err)
		}
	}
	// A refill that fails must not fail the parents that triggered it: it
	// runs in a savepoint, and its records stay in cdc.dangling_refs
	// (reported by verify) when it is rolled back.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("savepoint: %w", err)
	}
	if rerr := a.refillChildren(ctx, sp, winners, present); rerr != nil {
		if Classify(rerr) != Poison {
			return res, rerr
		}
		if err := sp.Rollback(ctx); err != nil {
			return res, fmt.Errorf("rollback refill: %w", err)
		}
		res.RefillError = rerr.Error()
	} else if err := sp.Commit(ctx); err != nil {
		return res, fmt.Errorf("release savepoint: %w", err)
	}
	for _, it := range winners {
		res.count(it, OutcomeApplied)
		if ct := it.ev.Source.ClusterTime; ct.Compare(res.LastClusterTime) > 0 {
			res.LastClusterTime = ct
		}
	}
	return res, nil
}

func deleteTime(ev *event.Event) time.Time {
	if !ev.Source.WallTime.IsZero() {
		return ev.Source.WallTime
	}
	return ev.Source.ClusterTime.Time()
}

// idSet is the id_map entries a batch needs.
type idSet map[docRef]uuid.UUID

func (s idSet) get(coll, key string) (uuid.UUID, bool) {
	id, ok := s[docRef{coll, key}]
	return id, ok
}

// rowID is the primary-key value of the item's row: its id_map new_id for
// uuid ids (nil when a delete finds none), its key string for text ids.
func (s idSet) rowID(it *item) (any, error) {
	if it.mapping.ID.Type == "text" {
		return it.docKey, nil
	}
	id, ok := s.get(it.mapping.Collection, it.docKey)
	if !ok {
		if it.ev.Op == event.OpDelete {
			return nil, nil
		}
		return nil, fmt.Errorf("id_map has no entry for %s %s after minting", it.mapping.Collection, it.docKey)
	}
	return id, nil
}

// resolveIDs mints id_map entries for the documents being written (and for
// references with the mint policy), honouring mappings that already exist,
// and looks up every other id the winners need, in one round trip.
func resolveIDs(ctx context.Context, tx pgx.Tx, winners []*item) (idSet, error) {
	var mintColl, mintKey, lookColl, lookKey []string
	var mintID []uuid.UUID
	looked, minted := map[docRef]bool{}, map[docRef]bool{}
	add := func(coll, key string, mint bool) {
		k := docRef{coll, key}
		if !looked[k] {
			looked[k] = true
			lookColl, lookKey = append(lookColl, coll), append(lookKey, key)
		}
		// A key first seen as a reference may be minted later in the
		// batch, as the document the batch writes.
		if mint && !minted[k] {
			minted[k] = true
			id, err := uuid.NewV7()
			if err != nil {
				id = uuid.New()
			}
			mintColl, mintKey, mintID = append(mintColl, coll), append(mintKey, key), append(mintID, id)
		}
	}
	for _, it := range winners {
		if it.mapping.ID.Type == "uuid" {
			add(it.mapping.Collection, it.docKey, it.ev.Op != event.OpDelete)
		}
		for _, ref := range refsOf(it) {
			add(ref.Collection, ref.LegacyID, ref.Missing == transform.MissingMint)
		}
	}
	out := idSet{}
	if len(lookColl) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	if len(mintColl) > 0 {
		b.Queue(`INSERT INTO id_map (collection, legacy_object_id, new_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
			ON CONFLICT (collection, legacy_object_id) DO NOTHING`, mintColl, mintKey, mintID)
	}
	b.Queue(`SELECT m.collection, m.legacy_object_id, m.new_id
		FROM unnest($1::text[], $2::text[]) AS k(collection, legacy_object_id)
		JOIN id_map m USING (collection, legacy_object_id)`, lookColl, lookKey)
	br := tx.SendBatch(ctx, b)
	if len(mintColl) > 0 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("id_map mint: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, fmt.Errorf("id_map lookup: %w", err)
	}
	for rows.Next() {
		var k docRef
		var id uuid.UUID
		if err := rows.Scan(&k.coll, &k.key, &id); err != nil {
			rows.Close()
			br.Close()
			return nil, fmt.Errorf("id_map lookup: %w", err)
		}
		out[k] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		br.Close()
		return nil, fmt.Errorf("id_map lookup: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("id_map: %w", err)
	}
	return out, nil
}
