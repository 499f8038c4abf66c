package replay

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amanat/cdc/pkg/event"
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

// Querier is what FindLost needs (a pool, a connection or a transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// lostPredicate is the SQL condition, on cdc.doc_versions v with $1 the
// collection, of a lost row.
func lostPredicate(m *transform.Mapping) string {
	table := pgx.Identifier(strings.Split(m.Table, ".")).Sanitize()
	id := pgx.Identifier{m.ID.Column}.Sanitize()
	if m.ID.Type == "text" {
		return fmt.Sprintf(`NOT v.deleted AND NOT EXISTS (SELECT 1 FROM %s t WHERE t.%s = v.doc_key)`, table, id)
	}
	return fmt.Sprintf(`NOT v.deleted AND NOT EXISTS (SELECT 1 FROM id_map m JOIN %s t ON t.%s = m.new_id
		WHERE m.collection = $1 AND m.legacy_object_id = v.doc_key)`, table, id)
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
		rows, err := q.Query(ctx, `SELECT v.doc_key, v.cluster_time, v.txn_index FROM cdc.doc_versions v
			WHERE v.collection = $1 AND v.doc_key = ANY($2) AND `+lostPredicate(m), c, keys[c])
		if err != nil {
			return nil, fmt.Errorf("find lost rows of %s: %w", c, err)
		}
		lost, err := scanLost(rows, c)
		if err != nil {
			return nil, fmt.Errorf("find lost rows of %s: %w", c, err)
		}
		out = append(out, lost...)
	}
	return out, nil
}

func scanLost(rows pgx.Rows, coll string) ([]Lost, error) {
	defer rows.Close()
	var out []Lost
	for rows.Next() {
		var l Lost
		var ct int64
		var idx int32
		if err := rows.Scan(&l.Key, &ct, &idx); err != nil {
			return nil, err
		}
		l.Collection = coll
		l.Version = event.Position{ClusterTime: event.Unpack(ct), TxnIndex: int(idx)}
		out = append(out, l)
	}
	return out, rows.Err()
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
		if _, err := tx.Exec(ctx, `SELECT 1 FROM cdc.doc_versions WHERE collection = $1 AND doc_key = ANY($2) AND NOT deleted
			ORDER BY doc_key FOR UPDATE`, c, keys[c]); err != nil {
			return nil, fmt.Errorf("lock the versions of %s: %w", c, err)
		}
		rows, err := tx.Query(ctx, `DELETE FROM cdc.doc_versions v WHERE v.collection = $1 AND v.doc_key = ANY($2) AND `+
			lostPredicate(m)+` RETURNING v.doc_key, v.cluster_time, v.txn_index`, c, keys[c])
		if err != nil {
			return nil, fmt.Errorf("forget the versions of lost rows of %s: %w", c, err)
		}
		lost, err := scanLost(rows, c)
		if err != nil {
			return nil, fmt.Errorf("forget the versions of lost rows of %s: %w", c, err)
		}
		out = append(out, lost...)
	}
	return out, nil
}

// Versions returns the version guard's stored position of each of refs
// that has one.
func Versions(ctx context.Context, q Querier, refs []DocRef) (map[DocRef]event.Position, error) {
	colls, keys := group(refs)
	out := map[DocRef]event.Position{}
	for _, c := range colls {
		rows, err := q.Query(ctx, `SELECT doc_key, cluster_time, txn_index FROM cdc.doc_versions
			WHERE collection = $1 AND doc_key = ANY($2)`, c, keys[c])
		if err != nil {
			return nil, fmt.Errorf("read versions of %s: %w", c, err)
		}
		vs, err := scanLost(rows, c)
		if err != nil {
			return nil, fmt.Errorf("read versions of %s: %w", c, err)
		}
		for _, v := range vs {
			out[v.DocRef] = v.Version
		}
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
		rows, err := pool.Query(ctx, `SELECT event_id FROM cdc.dead_letters WHERE event_id = ANY($1) AND status = 'open'`, ids)
		if err != nil {
			return nil, nil, fmt.Errorf("read dead letters: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, nil, err
			}
			if r, ok := byID[id]; ok {
				if _, still := left[r]; still {
					dead = append(dead, r)
					delete(left, r)
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
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
