// Package sink applies change events from JetStream to PostgreSQL.
//
// # The position
//
// Each batch is one Postgres transaction that also records the consumer's
// stream position (cdc.sink_positions.stream_seq, through pkg/state). The
// position is a true low-water mark: every message at or below it is
// applied, skipped by the version guard, dead-lettered, or set aside in
// cdc.deferred_events by that same transaction. Two kinds are set aside: a
// unit waiting for a parent under policy wait (retried from Postgres with
// back-off until its wait runs out, then dead-lettered), and the parts of
// a Mongo transaction that have stayed incomplete in memory for
// Config.TxnSpillAfter (loaded back and applied whole, in one Postgres
// transaction, when the last part arrives; dead-lettered whole, class
// incomplete, after Config.TxnTimeout). Parts held in memory keep the
// position below them. Messages are acknowledged only after the commit;
// a restart at any instant therefore finds every unresolved event either
// above the position in the stream or in cdc.deferred_events.
//
// Postgres is the authority. At every start the sink takes the fence,
// compares the stream with the position (the stream's creation time must
// be the one recorded, its last sequence must not be below the position,
// its first not above position+1) and re-creates the durable consumer
// right after the position. While running, delivered sequences must follow
// one another: a gap (messages removed by limits, age or a purge) stops
// the sink (ErrStreamGap); a sequence already delivered is a redelivery.
// A skipped sequence the stream still holds (messages lost in flight with
// the NATS node the sink was connected to, deliverygap.go) is not a gap:
// the sink re-reads from its position (ErrDeliverySkipped, retryable).
//
// # The fence
//
// One sink applies a consumer at a time (state.AcquireFence: a session
// advisory lock plus an epoch in the position row, checked FOR UPDATE at
// the start of every apply transaction). Another instance stands by,
// logging who holds the consumer, and takes over when the holder's session
// ends. A zombie whose epoch was superseded fails inside its own
// transaction and stands by.
//
// # Effectively once
//
// cdc.doc_versions keeps, per document, the position (cluster time, index
// in transaction) last applied. An event at or behind it is skipped, so
// redelivery, replay and reordering in the stream change nothing. A delete
// leaves a tombstone position, so an older insert cannot resurrect the row.
//
// # Errors
//
// Errors are classified by type (Classify): retryable errors retry the
// same batch with capped backoff and never dead-letter (the sink reports
// itself failing after Config.FailingAfter); poison events (row-specific
// SQLSTATE classes, transform rejections) are isolated with savepoints and
// dead-lettered alone (a Mongo transaction together) while the rest of the
// batch commits; fatal errors stop Run. Dead letters keep their first
// class and reason; later attempts are appended to their history. An event
// is parked behind an earlier open dead letter of its document, never
// behind a later one.
package sink
