package state

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
)

// The replay commands' side of the version guard and the dead letters:
// finding and forgetting the versions of lost rows (documents the guard
// says are applied whose row Postgres no longer has), and waiting for
// re-published events to be applied or dead-lettered.

// MappedTable names where a collection's rows live, for the lost-row
// checks: Table (optionally schema-qualified, "schema.table"), whose
// primary key IDColumn holds the id_map new_id of a document, or the
// document key itself when IDIsText.
type MappedTable struct {
	Table, IDColumn string
	IDIsText        bool
}

// lostPredicate is the SQL condition, on cdc.doc_versions v with $1 the
// collection, of a lost row: the guard holds a version that is not a
// delete, and the document has no row (for uuid ids: no id_map entry
// joined with a row).
func (t MappedTable) lostPredicate() string {
	table := pgx.Identifier(strings.Split(t.Table, ".")).Sanitize()
	id := pgx.Identifier{t.IDColumn}.Sanitize()
	if t.IDIsText {
		return fmt.Sprintf(`NOT v.deleted AND NOT EXISTS (SELECT 1 FROM %s t WHERE t.%s = v.doc_key)`, table, id)
	}
	return fmt.Sprintf(`NOT v.deleted AND NOT EXISTS (SELECT 1 FROM id_map m JOIN %s t ON t.%s = m.new_id
		WHERE m.collection = $1 AND m.legacy_object_id = v.doc_key)`, table, id)
}

// scanCollVersions reads rows of (doc_key, cluster_time, txn_index) of
// collection coll.
func scanCollVersions(rows pgx.Rows, coll string) ([]Version, error) {
	defer rows.Close()
	var out []Version
	for rows.Next() {
		var v Version
		var ct int64
		var ix int32
		if err := rows.Scan(&v.Doc.Key, &ct, &ix); err != nil {
			return nil, err
		}
		v.Doc.Collection = coll
		v.Position = event.Position{ClusterTime: event.Unpack(ct), TxnIndex: int(ix)}
		out = append(out, v)
	}
	return out, rows.Err()
}

// LostVersions returns the stored versions of the documents among keys of
// coll whose rows are lost: the guard holds a version that is not a
// delete, but the document has no row in t. Deleted is false in all of
// them.
func LostVersions(ctx context.Context, db DB, coll string, t MappedTable, keys []string) ([]Version, error) {
	rows, err := db.Query(ctx, `SELECT v.doc_key, v.cluster_time, v.txn_index FROM cdc.doc_versions v
			WHERE v.collection = $1 AND v.doc_key = ANY($2) AND `+t.lostPredicate(), coll, keys)
	if err != nil {
		return nil, fmt.Errorf("versions of lost rows of %s: %w", coll, err)
	}
	out, err := scanCollVersions(rows, coll)
	if err != nil {
		return nil, fmt.Errorf("versions of lost rows of %s: %w", coll, err)
	}
	return out, nil
}

// ForgetLostVersions removes, in tx, the version-guard rows of the
// documents among keys of coll whose rows are lost (see LostVersions), so
// that their events are applied again, and returns them with the version
// the guard had.
//
// It is safe while the sink runs: the guard rows are locked first (FOR
// UPDATE waits for a sink transaction writing the same documents), and
// the lost condition is evaluated afterwards by a new statement that sees
// that transaction's rows, so a document the sink has just written is
// never forgotten. tx must be a transaction for the lock to hold until
// the delete.
func ForgetLostVersions(ctx context.Context, tx DB, coll string, t MappedTable, keys []string) ([]Version, error) {
	if _, err := tx.Exec(ctx, `SELECT 1 FROM cdc.doc_versions WHERE collection = $1 AND doc_key = ANY($2) AND NOT deleted
			ORDER BY doc_key FOR UPDATE`, coll, keys); err != nil {
		return nil, fmt.Errorf("lock the versions of %s: %w", coll, err)
	}
	rows, err := tx.Query(ctx, `DELETE FROM cdc.doc_versions v WHERE v.collection = $1 AND v.doc_key = ANY($2) AND `+
		t.lostPredicate()+` RETURNING v.doc_key, v.cluster_time, v.txn_index`, coll, keys)
	if err != nil {
		return nil, fmt.Errorf("forget the versions of lost rows of %s: %w", coll, err)
	}
	out, err := scanCollVersions(rows, coll)
	if err != nil {
		return nil, fmt.Errorf("forget the versions of lost rows of %s: %w", coll, err)
	}
	return out, nil
}

// OpenDeadLetterEvents returns which of eventIDs have an open dead
// letter.
func OpenDeadLetterEvents(ctx context.Context, db DB, eventIDs []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(eventIDs) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, `SELECT event_id FROM cdc.dead_letters WHERE event_id = ANY($1) AND status = 'open'`, eventIDs)
	if err != nil {
		return nil, fmt.Errorf("read open dead letters of %d events: %w", len(eventIDs), err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read open dead letters of %d events: %w", len(eventIDs), err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read open dead letters of %d events: %w", len(eventIDs), err)
	}
	return out, nil
}
