package state

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The status report's reads of the replicator's state (`cdc status`). They
// are plain reads outside any transaction: status reports each section on
// its own, and one failed read never hides the others. The position
// itself is ReadPosition, the deferred events ReadDeferredStats.

// OpenDeadLetterCount is the number of open dead letters of one collection
// and class.
type OpenDeadLetterCount struct {
	Collection string
	Class      Class
	Count      int64
}

// OpenDeadLetterCounts counts the open dead letters by collection and
// class (as first recorded), ordered by collection, then class.
func OpenDeadLetterCounts(ctx context.Context, db DB) ([]OpenDeadLetterCount, error) {
	rows, err := db.Query(ctx, `SELECT collection, error_class, count(*) FROM cdc.dead_letters
		WHERE status = 'open' GROUP BY collection, error_class ORDER BY collection, error_class`)
	if err != nil {
		return nil, fmt.Errorf("count open dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OpenDeadLetterCount, error) {
		var c OpenDeadLetterCount
		var class string
		err := row.Scan(&c.Collection, &class, &c.Count)
		c.Class = Class(class)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("count open dead letters: %w", err)
	}
	return out, nil
}

// VersionCounts are a collection's version-guard entries: Live of
// documents that exist, Tombstones of deleted ones.
type VersionCounts struct {
	Live, Tombstones int64
}

// DocVersionCounts counts the version-guard entries by collection; a
// collection without any is absent from the map.
func DocVersionCounts(ctx context.Context, db DB) (map[string]VersionCounts, error) {
	rows, err := db.Query(ctx, `SELECT collection, count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted)
		FROM cdc.doc_versions GROUP BY collection`)
	if err != nil {
		return nil, fmt.Errorf("count stored versions: %w", err)
	}
	defer rows.Close()
	out := map[string]VersionCounts{}
	for rows.Next() {
		var coll string
		var v VersionCounts
		if err := rows.Scan(&coll, &v.Live, &v.Tombstones); err != nil {
			return nil, fmt.Errorf("count stored versions: %w", err)
		}
		out[coll] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count stored versions: %w", err)
	}
	return out, nil
}

// FenceHeld reports whether some session holds consumer's fence lock right
// now (AcquireFence's advisory lock, in this database): a live sink
// instance applies the consumer. The position row's owner and epoch stay
// after the holder is gone; this says whether the holder still is there.
func FenceHeld(ctx context.Context, db DB, consumer string) (bool, error) {
	// A two-key advisory lock shows its keys as classid and objid (the int4
	// keys reinterpreted as oid) with objsubid 2.
	var held bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 2
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND classid = $1::int4::oid AND objid = hashtext($2)::oid)`, lockClass, consumer).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("fence lock of %s: %w", consumer, err)
	}
	return held, nil
}
