package state

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
)

// Class is a dead letter's error class, as first recorded.
type Class string

const (
	// ClassPoison: Postgres refused the row itself (a CHECK, a unique key,
	// a program limit such as an index row too large) or the event is
	// undecodable.
	ClassPoison Class = "poison"
	// ClassViolation: the event breaks an invariant (an update or delete
	// of an append-only ledger document).
	ClassViolation Class = "violation"
	// ClassRejected: the transform refused a value, a parent under policy
	// reject is missing or did not appear within its wait, or the change
	// exceeded the bus max_payload.
	ClassRejected Class = "rejected"
	// ClassParked: held behind an earlier open dead letter of the same
	// document.
	ClassParked Class = "parked"
	// ClassIncomplete: part of a Mongo transaction whose other events
	// never all arrived.
	ClassIncomplete Class = "incomplete"
)

// Status is a dead letter's state.
type Status string

const (
	// StatusOpen: not applied; the document's later events park behind it
	// (in parking collections).
	StatusOpen Status = "open"
	// StatusRetried: a retry applied it (or the version guard found it
	// superseded).
	StatusRetried Status = "retried"
	// StatusDropped: an operator closed it without applying it, with a
	// reason.
	StatusDropped Status = "dropped"
)

// Action is what an entry of cdc.dead_letter_attempts records.
type Action string

const (
	ActionDeadLettered Action = "dead_lettered"
	ActionRetried      Action = "retried"
	ActionDropped      Action = "dropped"
	ActionReopened     Action = "reopened"
)

// NewDeadLetter is an event to record as dead-lettered.
type NewDeadLetter struct {
	EventID    string
	Collection string
	DocKey     string
	StreamSeq  uint64
	// Stream is the stream StreamSeq is a sequence of: with sink lanes
	// each lane's stream numbers its messages itself. "" records NULL (the
	// default stream); without a StreamSeq it is not recorded.
	Stream string
	Class  Class
	Field  string
	Value  string
	Reason string
	// Event is the envelope as canonical Extended JSON.
	Event []byte
	// Txn places the event in its Mongo transaction (nil outside one).
	Txn *event.Txn
	// Position is the event's source position (cluster time, index).
	Position event.Position
}

// RecordDeadLetters writes dls in tx. A new event gets an entry whose
// class, field and reason are never overwritten afterwards; an event that
// already has one (a retry that failed again, a redelivery) is re-opened
// with attempts+1, and the new class and reason go to its history. Either
// way one row is appended to cdc.dead_letter_attempts. A re-opened entry
// keeps its stream and stream sequence as a pair: a retry (which reads no
// stream) or a redelivery never pairs the first sequence with another
// stream.
func RecordDeadLetters(ctx context.Context, tx BatchDB, dls []NewDeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, d := range dls {
		var txnID *string
		var txnIndex *int32
		var txnLast *bool
		if d.Txn != nil {
			id, ix, last := d.Txn.ID(), int32(d.Txn.Index), d.Txn.Last
			txnID, txnIndex, txnLast = &id, &ix, &last
		}
		seq := int64(d.StreamSeq)
		var seqArg *int64
		stream := ""
		if seq > 0 {
			seqArg, stream = &seq, d.Stream
		}
		var ct *int64
		if d.Position.ClusterTime != (event.ClusterTime{}) {
			v := d.Position.ClusterTime.Pack()
			ct = &v
		}
		b.Queue(`
			WITH up AS (
				INSERT INTO cdc.dead_letters AS d (event_id, collection, doc_key, stream_seq, error_class, field, value, reason, event,
					txn_id, txn_index, txn_last, cluster_time, stream)
				VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, ''), $8, $9, $10, $11, $12, $13, NULLIF($14, ''))
				ON CONFLICT (event_id) DO UPDATE
				SET attempts = d.attempts + 1, last_seen = now(), status = 'open', status_at = now(), status_reason = NULL,
				    stream_seq = coalesce(d.stream_seq, EXCLUDED.stream_seq),
				    stream = CASE WHEN d.stream_seq IS NULL THEN EXCLUDED.stream ELSE d.stream END, txn_id = coalesce(d.txn_id, EXCLUDED.txn_id),
				    txn_index = coalesce(d.txn_index, EXCLUDED.txn_index), txn_last = coalesce(d.txn_last, EXCLUDED.txn_last),
				    cluster_time = coalesce(d.cluster_time, EXCLUDED.cluster_time)
				RETURNING id, (xmax = 0) AS inserted)
			INSERT INTO cdc.dead_letter_attempts (dead_letter_id, action, outcome, error_class, field, value, reason)
			SELECT id, CASE WHEN inserted THEN 'dead_lettered' ELSE 'retried' END, 'dead_lettered', $5, NULLIF($6, ''), NULLIF($7, ''), $8
			FROM up`,
			d.EventID, d.Collection, textSafe(d.DocKey), seqArg, string(d.Class), textSafe(d.Field), textSafe(d.Value), textSafe(d.Reason), d.Event, txnID, txnIndex, txnLast, ct, stream)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record %d dead letters: %w", len(dls), err)
	}
	return nil
}

// BatchDB is a DB that can send a pgx.Batch (a connection or a
// transaction).
type BatchDB interface {
	DB
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// OpenDeadLetterPositions returns, for each of refs that has open dead
// letters, the source position of the earliest one, leaving out the
// entries of events in exclude (the ones being retried). An entry
// recorded before positions were kept counts as earlier than anything.
func OpenDeadLetterPositions(ctx context.Context, db DB, refs []DocRef, exclude []string) (map[DocRef]event.Position, error) {
	out := map[DocRef]event.Position{}
	if len(refs) == 0 {
		return out, nil
	}
	colls, keys := make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		colls[i], keys[i] = r.Collection, textSafe(r.Key) // as RecordDeadLetters stores it
	}
	if exclude == nil {
		exclude = []string{}
	}
	rows, err := db.Query(ctx, `SELECT d.collection, d.doc_key, min(coalesce(d.cluster_time, 0)),
			(array_agg(coalesce(d.txn_index, 0) ORDER BY coalesce(d.cluster_time, 0), coalesce(d.txn_index, 0)))[1]
		FROM cdc.dead_letters d
		JOIN (SELECT DISTINCT * FROM unnest($1::text[], $2::text[])) AS k(collection, doc_key) USING (collection, doc_key)
		WHERE d.status = 'open' AND NOT (d.event_id = ANY($3))
		GROUP BY d.collection, d.doc_key`, colls, keys, exclude)
	if err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r DocRef
		var ct int64
		var ix int32
		if err := rows.Scan(&r.Collection, &r.Key, &ct, &ix); err != nil {
			return nil, fmt.Errorf("open dead letters: %w", err)
		}
		out[r] = event.Position{ClusterTime: event.Unpack(ct), TxnIndex: int(ix)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	return out, nil
}

// textSafe makes s storable in a Postgres text column, which refuses NUL
// characters (SQLSTATE 22021 for a 0x00 byte) and invalid UTF-8 while a
// BSON string may hold both: a dead letter's value or reason quoting such
// a document must not fail the batch that records it. NUL becomes the
// four characters \x00 and invalid bytes U+FFFD; the event itself keeps
// the exact bytes.
func textSafe(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", `\x00`)
}
