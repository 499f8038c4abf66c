package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The continuous verifier's findings (cdc.verify_mismatches, migration
// 00019): written by pkg/verify when a mismatch survives its re-check,
// read by `cdc status`.

// VerifyMismatch is one document that differs, for one check.
type VerifyMismatch struct {
	Collection string
	// DocKey is the document key (event.KeyString of its _id).
	DocKey string
	// Check is the verify check that failed (document_diff, ...).
	Check string
	// Table, Column, Mongo and Postgres say where and how it differs,
	// when known; Detail says it in a sentence.
	Table, Column   string
	Mongo, Postgres string
	Detail          string
	// Times counts the confirmations; FirstSeen and LastSeen are the
	// first and the latest (set by RecordVerifyMismatch).
	Times               int64
	FirstSeen, LastSeen time.Time
}

// RecordVerifyMismatch records a confirmed mismatch: a new row, or, for a
// document and check recorded before, one more confirmation with what was
// seen this time. Values are made storable (textSafe): they quote the
// documents.
func RecordVerifyMismatch(ctx context.Context, db DB, m VerifyMismatch) error {
	_, err := db.Exec(ctx, `INSERT INTO cdc.verify_mismatches AS v
		(collection, doc_key, check_name, table_name, column_name, mongo_value, postgres_value, detail)
		VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''), nullif($6, ''), nullif($7, ''), $8)
		ON CONFLICT (collection, doc_key, check_name) DO UPDATE
		SET table_name = EXCLUDED.table_name, column_name = EXCLUDED.column_name, mongo_value = EXCLUDED.mongo_value,
		    postgres_value = EXCLUDED.postgres_value, detail = EXCLUDED.detail, times = v.times + 1, last_seen = now()`,
		textSafe(m.Collection), textSafe(m.DocKey), m.Check, textSafe(m.Table), textSafe(m.Column),
		textSafe(m.Mongo), textSafe(m.Postgres), textSafe(m.Detail))
	if err != nil {
		return fmt.Errorf("record the verify mismatch of %s %s: %w", m.Collection, m.DocKey, err)
	}
	return nil
}

// VerifyMismatches summarises cdc.verify_mismatches: the most recently
// confirmed mismatch (ok false: none was ever recorded) and how many
// document-and-check rows there are.
func VerifyMismatches(ctx context.Context, db DB) (last VerifyMismatch, rows int64, ok bool, err error) {
	if err := db.QueryRow(ctx, `SELECT count(*) FROM cdc.verify_mismatches`).Scan(&rows); err != nil {
		return last, 0, false, fmt.Errorf("count verify mismatches: %w", err)
	}
	var table, column, mongo, pg pgtype.Text
	err = db.QueryRow(ctx, `SELECT collection, doc_key, check_name, table_name, column_name, mongo_value, postgres_value,
		detail, times, first_seen, last_seen FROM cdc.verify_mismatches ORDER BY last_seen DESC, collection, doc_key, check_name LIMIT 1`).
		Scan(&last.Collection, &last.DocKey, &last.Check, &table, &column, &mongo, &pg, &last.Detail, &last.Times, &last.FirstSeen, &last.LastSeen)
	if errors.Is(err, pgx.ErrNoRows) {
		return VerifyMismatch{}, rows, false, nil
	}
	if err != nil {
		return VerifyMismatch{}, 0, false, fmt.Errorf("read the last verify mismatch: %w", err)
	}
	last.Table, last.Column, last.Mongo, last.Postgres = table.String, column.String, mongo.String, pg.String
	return last, rows, true, nil
}
