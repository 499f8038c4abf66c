package state

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Dangling is a reference written as NULL because its parent was missing
// (policy null), recorded in cdc.dangling_refs until the parent arrives.
type Dangling struct {
	Doc           DocRef
	Column        string
	RefCollection string
	RefLegacyID   string
	// Event is the envelope of the version that wrote it, for references
	// inside child tables (re-applied when the parent arrives); nil for a
	// top-level column (filled in place).
	Event []byte
}

// QueueForgetDangling queues, in b, the removal of the dangling records
// of docs (each document written gets its records anew).
func QueueForgetDangling(b *pgx.Batch, docs []DocRef) {
	colls, keys := splitDocs(docs)
	b.Queue(`DELETE FROM cdc.dangling_refs d USING unnest($1::text[], $2::text[]) AS w(collection, doc_key)
		WHERE d.collection = w.collection AND d.doc_key = w.doc_key`, colls, keys)
}

// QueueRecordDangling queues, in b, the records of ds.
func QueueRecordDangling(b *pgx.Batch, ds []Dangling) {
	if len(ds) == 0 {
		return
	}
	n := len(ds)
	colls, keys, cols, refColls, refIDs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	evs := make([][]byte, n)
	for i, d := range ds {
		colls[i], keys[i], cols[i], refColls[i], refIDs[i], evs[i] = d.Doc.Collection, d.Doc.Key, d.Column, d.RefCollection, d.RefLegacyID, d.Event
	}
	b.Queue(`INSERT INTO cdc.dangling_refs (collection, doc_key, column_name, ref_collection, ref_legacy_id, event)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])
		ON CONFLICT (collection, doc_key, column_name)
		DO UPDATE SET ref_collection = EXCLUDED.ref_collection, ref_legacy_id = EXCLUDED.ref_legacy_id,
		              event = EXCLUDED.event, first_seen = now()`,
		colls, keys, cols, refColls, refIDs, evs)
}

// FillIn names a top-level reference column to fill in: the column
// Column of Table (whose primary key IDColumn is the id_map new_id of a
// document of Collection, or the document key itself when IDIsText),
// referencing RefCollection.
type FillIn struct {
	Table, Column, IDColumn string
	IDIsText                bool
	Collection              string
	RefCollection           string
}

// QueueFillDangling queues, in b, filling in f's column where it was left
// NULL for one of the parents refKeys (now in id_map), removing their
// dangling records in the same statement.
func QueueFillDangling(b *pgx.Batch, f FillIn, refKeys []string) {
	table := pgx.Identifier(strings.Split(f.Table, ".")).Sanitize()
	col, idCol := pgx.Identifier{f.Column}.Sanitize(), pgx.Identifier{f.IDColumn}.Sanitize()
	match := "t." + idCol + " = cm.new_id"
	join := "JOIN id_map cm ON cm.collection = $1 AND cm.legacy_object_id = f.doc_key"
	if f.IDIsText {
		match, join = "t."+idCol+" = f.doc_key", ""
	}
	b.Queue(fmt.Sprintf(`WITH filled AS (
		DELETE FROM cdc.dangling_refs d USING id_map pm
		WHERE d.collection = $1 AND d.column_name = $2 AND d.ref_collection = $3
		  AND d.ref_legacy_id = ANY($4::text[])
		  AND pm.collection = d.ref_collection AND pm.legacy_object_id = d.ref_legacy_id
		RETURNING d.doc_key, pm.new_id)
		UPDATE %s t SET %s = f.new_id FROM filled f %s WHERE %s`, table, col, join, match),
		f.Collection, f.Column, f.RefCollection, refKeys)
}

// DanglingChildEvents returns, for the child-table references waiting for
// one of parents, the envelope of each referencing document's version
// (one per document).
func DanglingChildEvents(ctx context.Context, db DB, parents []DocRef) ([][]byte, error) {
	colls, keys := splitDocs(parents)
	rows, err := db.Query(ctx, `SELECT DISTINCT ON (d.collection, d.doc_key) d.event FROM cdc.dangling_refs d
		JOIN unnest($1::text[], $2::text[]) AS p(collection, legacy_id)
		  ON d.ref_collection = p.collection AND d.ref_legacy_id = p.legacy_id
		WHERE d.event IS NOT NULL
		ORDER BY d.collection, d.doc_key`, colls, keys)
	if err != nil {
		return nil, fmt.Errorf("dangling child references: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var env []byte
		if err := rows.Scan(&env); err != nil {
			return nil, fmt.Errorf("dangling child references: %w", err)
		}
		out = append(out, env)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dangling child references: %w", err)
	}
	return out, nil
}

func splitDocs(docs []DocRef) ([]string, []string) {
	colls, keys := make([]string, len(docs)), make([]string, len(docs))
	for i, d := range docs {
		colls[i], keys[i] = d.Collection, d.Key
	}
	return colls, keys
}
