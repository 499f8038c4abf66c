package state

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeferKind says why an event is set aside.
type DeferKind string

const (
	// DeferWait: a reference under policy wait has no parent yet; the
	// event is offered again at NextTry until its wait runs out.
	DeferWait DeferKind = "wait"
	// DeferTxn: part of a Mongo transaction whose other events have not
	// all arrived; applied with them once they have.
	DeferTxn DeferKind = "txn"
)

// Deferred is one row of cdc.deferred_events: an event the position has
// passed but that is not applied yet.
type Deferred struct {
	Seq        uint64
	Kind       DeferKind
	EventID    string
	Collection string
	DocKey     string
	// TxnID, TxnIndex and TxnLast place a transaction's event; TxnID is ""
	// outside a transaction.
	TxnID    string
	TxnIndex int
	TxnLast  bool
	Reason   string
	// Event is the BSON envelope as it came from the stream; nil when read
	// with DeferredTxnIndex.
	Event     []byte
	Attempts  int
	FirstSeen time.Time
	NextTry   time.Time
}

// Defer writes ds for consumer in tx (the transaction that moves the
// position past them). An event already deferred keeps its first_seen and
// counts one more attempt, with the new reason and next try.
func Defer(ctx context.Context, tx DB, consumer string, ds []Deferred) error {
	if len(ds) == 0 {
		return nil
	}
	n := len(ds)
	seqs, attempts, idx := make([]int64, n), make([]int32, n), make([]*int32, n)
	kinds, ids, colls, keys, txns, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]*string, n), make([]string, n)
	lasts := make([]bool, n)
	evs := make([][]byte, n)
	firsts, nexts := make([]time.Time, n), make([]time.Time, n)
	for i, d := range ds {
		seqs[i], kinds[i], ids[i], colls[i], keys[i], reasons[i], evs[i] = int64(d.Seq), string(d.Kind), d.EventID, d.Collection, d.DocKey, d.Reason, d.Event
		lasts[i], attempts[i] = d.TxnLast, int32(d.Attempts)
		if d.TxnID != "" {
			t, ix := d.TxnID, int32(d.TxnIndex)
			txns[i], idx[i] = &t, &ix
		}
		firsts[i], nexts[i] = d.FirstSeen, d.NextTry
		if firsts[i].IsZero() {
			firsts[i] = time.Now()
		}
		if nexts[i].IsZero() {
			nexts[i] = firsts[i]
		}
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO cdc.deferred_events AS d (consumer, stream_seq, kind, event_id, collection, doc_key, txn_id, txn_index, txn_last,
			reason, event, attempts, first_seen, next_try)
		SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::bool[],
			$10::text[], $11::bytea[], $12::int[], $13::timestamptz[], $14::timestamptz[])
		ON CONFLICT (consumer, stream_seq) DO UPDATE
		SET kind = EXCLUDED.kind, reason = EXCLUDED.reason, attempts = d.attempts + 1, next_try = EXCLUDED.next_try`,
		consumer, seqs, kinds, ids, colls, keys, txns, idx, lasts, reasons, evs, attempts, firsts, nexts)
	if err != nil {
		return fmt.Errorf("defer %d events of %s: %w", n, consumer, err)
	}
	return nil
}

// Undefer removes the deferred events at seqs (they were applied, skipped
// or dead-lettered in tx).
func Undefer(ctx context.Context, tx DB, consumer string, seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	s := make([]int64, len(seqs))
	for i, v := range seqs {
		s[i] = int64(v)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM cdc.deferred_events WHERE consumer = $1 AND stream_seq = ANY($2)`, consumer, s); err != nil {
		return fmt.Errorf("resolve deferred events of %s: %w", consumer, err)
	}
	return nil
}

const deferredColumns = `stream_seq, kind, event_id, collection, doc_key, coalesce(txn_id, ''), coalesce(txn_index, 0), txn_last,
	reason, attempts, first_seen, next_try`

func scanDeferred(rows pgx.Rows, withEvent bool) ([]Deferred, error) {
	defer rows.Close()
	var out []Deferred
	for rows.Next() {
		var d Deferred
		var seq int64
		var kind string
		dst := []any{&seq, &kind, &d.EventID, &d.Collection, &d.DocKey, &d.TxnID, &d.TxnIndex, &d.TxnLast, &d.Reason, &d.Attempts, &d.FirstSeen, &d.NextTry}
		if withEvent {
			dst = append(dst, &d.Event)
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, err
		}
		d.Seq, d.Kind = uint64(seq), DeferKind(kind)
		out = append(out, d)
	}
	return out, rows.Err()
}

// DueWaits returns up to limit waiting events of consumer whose next try
// has come, whole transactions together, in stream order.
func DueWaits(ctx context.Context, db DB, consumer string, now time.Time, limit int) ([]Deferred, error) {
	rows, err := db.Query(ctx, `
		WITH due AS (
			SELECT stream_seq, txn_id FROM cdc.deferred_events
			WHERE consumer = $1 AND kind = 'wait' AND next_try <= $2 ORDER BY stream_seq LIMIT $3)
		SELECT `+deferredColumns+`, event FROM cdc.deferred_events d
		WHERE d.consumer = $1 AND d.kind = 'wait'
		  AND (d.stream_seq IN (SELECT stream_seq FROM due) OR d.txn_id IN (SELECT txn_id FROM due WHERE txn_id IS NOT NULL))
		ORDER BY d.stream_seq`, consumer, now, limit)
	if err != nil {
		return nil, fmt.Errorf("due deferred events of %s: %w", consumer, err)
	}
	out, err := scanDeferred(rows, true)
	if err != nil {
		return nil, fmt.Errorf("due deferred events of %s: %w", consumer, err)
	}
	return out, nil
}

// DeferredTxnParts returns the deferred parts of transaction txnID, with
// their events, in transaction order.
func DeferredTxnParts(ctx context.Context, db DB, consumer, txnID string) ([]Deferred, error) {
	rows, err := db.Query(ctx, `SELECT `+deferredColumns+`, event FROM cdc.deferred_events
		WHERE consumer = $1 AND kind = 'txn' AND txn_id = $2 ORDER BY txn_index, stream_seq`, consumer, txnID)
	if err != nil {
		return nil, fmt.Errorf("deferred transaction %s of %s: %w", txnID, consumer, err)
	}
	out, err := scanDeferred(rows, true)
	if err != nil {
		return nil, fmt.Errorf("deferred transaction %s of %s: %w", txnID, consumer, err)
	}
	return out, nil
}

// DeferredTxnIndex lists every deferred transaction part of consumer
// without the events: what a starting sink needs to know which parts of
// open transactions it already holds.
func DeferredTxnIndex(ctx context.Context, db DB, consumer string) ([]Deferred, error) {
	rows, err := db.Query(ctx, `SELECT `+deferredColumns+` FROM cdc.deferred_events
		WHERE consumer = $1 AND kind = 'txn' ORDER BY stream_seq`, consumer)
	if err != nil {
		return nil, fmt.Errorf("deferred transactions of %s: %w", consumer, err)
	}
	out, err := scanDeferred(rows, false)
	if err != nil {
		return nil, fmt.Errorf("deferred transactions of %s: %w", consumer, err)
	}
	return out, nil
}

// DeferredStats summarises what consumer has set aside.
type DeferredStats struct {
	Waiting, TxnParts int64
	Bytes             int64
	// Oldest is the first_seen of the oldest deferred event (zero: none).
	Oldest time.Time
}

// ReadDeferredStats reads DeferredStats.
func ReadDeferredStats(ctx context.Context, db DB, consumer string) (DeferredStats, error) {
	var s DeferredStats
	var oldest *time.Time
	err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE kind = 'wait'), count(*) FILTER (WHERE kind = 'txn'),
		coalesce(sum(octet_length(event)), 0), min(first_seen) FROM cdc.deferred_events WHERE consumer = $1`, consumer).
		Scan(&s.Waiting, &s.TxnParts, &s.Bytes, &oldest)
	if err != nil {
		return s, fmt.Errorf("deferred events of %s: %w", consumer, err)
	}
	if oldest != nil {
		s.Oldest = *oldest
	}
	return s, nil
}
