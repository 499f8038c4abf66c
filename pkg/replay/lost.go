package replay

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// DocRef names a source document: its collection and its key in
// event.KeyString form (the id_map legacy_object_id).
type DocRef struct {
	Collection string
	Key        string
}

// Lost is a document whose row Postgres lost behind the replicator's back:
// the version guard (cdc.doc_versions) says a version of it was applied and
// not deleted, but its row (or, for uuid ids, its id_map entry) is gone.
// Re-applying its events does nothing while the guard says they are
// already applied; see ForgetLost.
type Lost struct {
	DocRef
	// Version is the guard's position for it.
	Version event.Position
}

// Querier is what FindLost and Versions need (a pool, a connection or a
// transaction).
type Querier = state.DB

// mappedTable is where the lost-row checks look for m's rows.
func mappedTable(m *transform.Mapping) state.MappedTable {
	return state.MappedTable{Table: m.Table, IDColumn: m.ID.Column, IDIsText: m.ID.Type == "text"}
}

// group splits refs by collection, deduplicated, in a stable order.
func group(refs []DocRef) (colls []string, keys map[string][]string) {
	keys = map[string][]string{}
	seen := map[DocRef]bool{}
	for _, r := range refs {
		if seen[r] {
			continue
		}
		seen[r] = true
		if _, ok := keys[r.Collection]; !ok {
			colls = append(colls, r.Collection)
		}
		keys[r.Collection] = append(keys[r.Collection], r.Key)
	}
	sort.Strings(colls)
	return colls, keys
}

// FindLost returns the documents among refs whose rows are lost. Refs of
// collections without a mapping are ignored.
func FindLost(ctx context.Context, q Querier, set *transform.Set, refs []DocRef) ([]Lost, error) {
	colls, keys := group(refs)
	var out []Lost
	for _, c := range colls {
		m, ok := set.Get(c)
		if !ok {
			continue
		}
		vs, err := state.LostVersions(ctx, q, c, mappedTable(m), keys[c])
		if err != nil {
			return nil, fmt.Errorf("find lost rows: %w", err)
		}
		out = append(out, toLost(vs)...)
	}
	return out, nil
}

// toLost converts the state package's versions.
func toLost(vs []state.Version) []Lost {
	out := make([]Lost, len(vs))
	for i, v := range vs {
		out[i] = Lost{DocRef: DocRef(v.Doc), Version: v.Position}
	}
	return out
}

// ForgetLost removes the version-guard rows of the lost documents among
// refs, so that their events (re-published or re-applied) are applied
// again, and returns them with the version the guard had. It commits on
// its own; replay stream uses ForgetLostTx inside the transaction that
// re-applies the events instead.
func ForgetLost(ctx context.Context, pool *pgxpool.Pool, set *transform.Set, refs []DocRef) ([]Lost, error) {
	var out []Lost
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		out, err = ForgetLostTx(ctx, tx, set, refs)
		return err
	})
	return out, err
}

// ForgetLostTx is ForgetLost inside tx.
//
// It is safe while the sink runs: the guard rows are locked first (FOR
// UPDATE waits for a sink transaction writing the same documents), and
// the lost condition is evaluated afterwards by a new statement that sees
// that transaction's rows, so a document the sink has just written is
// never forgotten. Forgetting a document whose row is gone cannot lose a
// newer version: the row holds none.
func ForgetLostTx(ctx context.Context, tx pgx.Tx, set *transform.Set, refs []DocRef) ([]Lost, error) {
	colls, keys := group(refs)
	var out []Lost
	for _, c := range colls {
		m, ok := set.Get(c)
		if !ok {
			continue
		}
		vs, err := state.ForgetLostVersions(ctx, tx, c, mappedTable(m), keys[c])
		if err != nil {
			return nil, err
		}
		out = append(out, toLost(vs)...)
	}
	return out, nil
}

// Versions returns the version guard's stored position of each of refs
// that has one.
func Versions(ctx context.Context, q Querier, refs []DocRef) (map[DocRef]event.Position, error) {
	out := map[DocRef]event.Position{}
	if len(refs) == 0 {
		return out, nil
	}
	docs := make([]state.DocRef, len(refs))
	for i, r := range refs {
		docs[i] = state.DocRef(r)
	}
	vs, err := state.ReadVersions(ctx, q, docs)
	if err != nil {
		return nil, fmt.Errorf("read versions: %w", err)
	}
	for d, v := range vs {
		out[DocRef(d)] = v
	}
	return out, nil
}

// Awaited is a document whose published event must reach Postgres.
type Awaited struct {
	// Position is the published event's position.
	Position event.Position
	// EventID is the published event's id (to find it among dead letters).
	EventID string
}

// WaitApplied waits until the version guard of every document in want is
// at or past its awaited position (the live sink applied the event, or a
// newer one), or the event was dead-lettered, or timeout passes. It
// returns the documents still pending and those dead-lettered.
func WaitApplied(ctx context.Context, pool *pgxpool.Pool, want map[DocRef]Awaited, timeout time.Duration) (pending, dead []DocRef, err error) {
	deadline := time.Now().Add(timeout)
	left := make(map[DocRef]Awaited, len(want))
	for k, v := range want {
		left[k] = v
	}
	for {
		refs := make([]DocRef, 0, len(left))
		ids := make([]string, 0, len(left))
		byID := map[string]DocRef{}
		for k, v := range left {
			refs = append(refs, k)
			ids = append(ids, v.EventID)
			byID[v.EventID] = k
		}
		vs, err := Versions(ctx, pool, refs)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range refs {
			if v, ok := vs[r]; ok && v.Compare(left[r].Position) >= 0 {
				delete(left, r)
			}
		}
		open, err := state.OpenDeadLetterEvents(ctx, pool, ids)
		if err != nil {
			return nil, nil, err
		}
		for id := range open {
			if r, ok := byID[id]; ok {
				if _, still := left[r]; still {
					dead = append(dead, r)
					delete(left, r)
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			for r := range left {
				pending = append(pending, r)
			}
			sortRefs(pending)
			sortRefs(dead)
			return pending, dead, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func sortRefs(r []DocRef) {
	sort.Slice(r, func(i, j int) bool {
		if r[i].Collection != r[j].Collection {
			return r[i].Collection < r[j].Collection
		}
		return r[i].Key < r[j].Key
	})
}
