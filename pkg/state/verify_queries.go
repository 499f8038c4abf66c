package state

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/amanat/cdc/pkg/event"
)

// The verifier's reads of the replicator's state. It runs them inside its
// read-only snapshot transaction, next to its reads of the application's
// tables, so that all of them see one state.

// NewestDeadLetterTime returns the newest source cluster time among the
// dead-lettered events (ok false: there are none). A dead-lettered event
// is consumed without moving the position, so this and the position's
// ClusterTime together say how far the sink has consumed. It reads the
// cluster time from the stored envelope, which every entry has (the
// cluster_time column is empty for entries recorded before it existed).
func NewestDeadLetterTime(ctx context.Context, db DB) (ct event.ClusterTime, ok bool, err error) {
	var v pgtype.Int8
	err = db.QueryRow(ctx, `SELECT max(((event #>> '{source,cluster_time,$timestamp,t}')::bigint << 32)
		          | (event #>> '{source,cluster_time,$timestamp,i}')::bigint)
		   FROM cdc.dead_letters`).Scan(&v)
	if err != nil {
		return event.ClusterTime{}, false, fmt.Errorf("newest dead-lettered cluster time: %w", err)
	}
	if !v.Valid {
		return event.ClusterTime{}, false, nil
	}
	return event.Unpack(v.Int64), true, nil
}

// DocVersions returns the stored versions (deleted: a tombstone) of the
// documents among keys of coll that have one, by key.
func DocVersions(ctx context.Context, db DB, coll string, keys []string) (map[string]Version, error) {
	out := map[string]Version{}
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, `SELECT doc_key, cluster_time, txn_index, deleted FROM cdc.doc_versions
		WHERE collection = $1 AND doc_key = ANY($2)`, coll, keys)
	if err != nil {
		return nil, fmt.Errorf("stored versions of %s: %w", coll, err)
	}
	defer rows.Close()
	for rows.Next() {
		v := Version{Doc: DocRef{Collection: coll}}
		var ct int64
		var ix int32
		if err := rows.Scan(&v.Doc.Key, &ct, &ix, &v.Deleted); err != nil {
			return nil, fmt.Errorf("stored versions of %s: %w", coll, err)
		}
		v.Position = event.Position{ClusterTime: event.Unpack(ct), TxnIndex: int(ix)}
		out[v.Doc.Key] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stored versions of %s: %w", coll, err)
	}
	return out, nil
}

// DanglingRecords returns the dangling-reference records of the documents
// among keys of coll, without their envelopes (Event is nil).
func DanglingRecords(ctx context.Context, db DB, coll string, keys []string) ([]Dangling, error) {
	rows, err := db.Query(ctx, `SELECT doc_key, column_name, ref_collection, ref_legacy_id FROM cdc.dangling_refs
		WHERE collection = $1 AND doc_key = ANY($2)`, coll, keys)
	if err != nil {
		return nil, fmt.Errorf("dangling references of %s: %w", coll, err)
	}
	defer rows.Close()
	var out []Dangling
	for rows.Next() {
		d := Dangling{Doc: DocRef{Collection: coll}}
		if err := rows.Scan(&d.Doc.Key, &d.Column, &d.RefCollection, &d.RefLegacyID); err != nil {
			return nil, fmt.Errorf("dangling references of %s: %w", coll, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dangling references of %s: %w", coll, err)
	}
	return out, nil
}

// OpenDeadLetterReasons returns, for each of keys of coll that has open
// dead letters, the error class and reason of the newest one, as
// "class: reason".
func OpenDeadLetterReasons(ctx context.Context, db DB, coll string, keys []string) (map[string]string, error) {
	out := map[string]string{}
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, `SELECT DISTINCT ON (doc_key) doc_key, error_class || ': ' || reason FROM cdc.dead_letters
		WHERE collection = $1 AND doc_key = ANY($2) AND status = 'open' ORDER BY doc_key, id DESC`, coll, keys)
	if err != nil {
		return nil, fmt.Errorf("open dead letters of %s: %w", coll, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, r string
		if err := rows.Scan(&k, &r); err != nil {
			return nil, fmt.Errorf("open dead letters of %s: %w", coll, err)
		}
		out[k] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("open dead letters of %s: %w", coll, err)
	}
	return out, nil
}
