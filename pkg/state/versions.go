package state

import (
	"context"
	"fmt"

	"github.com/amanat/cdc/pkg/event"
)

// Version is a document's position for the version guard
// (cdc.doc_versions): the newest (cluster time, index in transaction)
// applied, and whether it was a delete (a tombstone).
type Version struct {
	Doc      DocRef
	Position event.Position
	Deleted  bool
}

// AdvanceVersions is the version guard: for each of vs it stores the
// version where it is newer than the one stored (or none is), in tx, and
// returns the documents it advanced: only those may be written. vs must
// name each document once (ON CONFLICT refuses a key twice, 21000).
func AdvanceVersions(ctx context.Context, tx DB, vs []Version) (map[DocRef]bool, error) {
	n := len(vs)
	colls, keys := make([]string, n), make([]string, n)
	cts, idx := make([]int64, n), make([]int32, n)
	dels := make([]bool, n)
	for i, v := range vs {
		colls[i], keys[i], cts[i], idx[i], dels[i] = v.Doc.Collection, v.Doc.Key, v.Position.ClusterTime.Pack(), int32(v.Position.TxnIndex), v.Deleted
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO cdc.doc_versions AS v (collection, doc_key, cluster_time, txn_index, deleted)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::bool[])
		ON CONFLICT (collection, doc_key) DO UPDATE
		SET cluster_time = EXCLUDED.cluster_time, txn_index = EXCLUDED.txn_index,
		    deleted = EXCLUDED.deleted, updated_at = now()
		WHERE (v.cluster_time, v.txn_index) < (EXCLUDED.cluster_time, EXCLUDED.txn_index)
		RETURNING collection, doc_key`, colls, keys, cts, idx, dels)
	if err != nil {
		return nil, fmt.Errorf("version guard: %w", err)
	}
	defer rows.Close()
	won := make(map[DocRef]bool, n)
	for rows.Next() {
		var k DocRef
		if err := rows.Scan(&k.Collection, &k.Key); err != nil {
			return nil, fmt.Errorf("version guard: %w", err)
		}
		won[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("version guard: %w", err)
	}
	return won, nil
}

// ReadVersions returns the stored versions of docs (those that have one).
func ReadVersions(ctx context.Context, db DB, docs []DocRef) (map[DocRef]event.Position, error) {
	colls, keys := make([]string, len(docs)), make([]string, len(docs))
	for i, d := range docs {
		colls[i], keys[i] = d.Collection, d.Key
	}
	// One index probe per key ("Keyed lookups" in doc.go).
	rows, err := db.Query(ctx, `SELECT k.collection, k.doc_key, v.cluster_time, v.txn_index
		FROM unnest($1::text[], $2::text[]) AS k(collection, doc_key)
		CROSS JOIN LATERAL (SELECT v.cluster_time, v.txn_index FROM cdc.doc_versions v
			WHERE v.collection = k.collection AND v.doc_key = k.doc_key LIMIT 1) AS v`, colls, keys)
	if err != nil {
		return nil, fmt.Errorf("stored versions: %w", err)
	}
	defer rows.Close()
	out := map[DocRef]event.Position{}
	for rows.Next() {
		var k DocRef
		var ct int64
		var ix int32
		if err := rows.Scan(&k.Collection, &k.Key, &ct, &ix); err != nil {
			return nil, fmt.Errorf("stored versions: %w", err)
		}
		out[k] = event.Position{ClusterTime: event.Unpack(ct), TxnIndex: int(ix)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stored versions: %w", err)
	}
	return out, nil
}
