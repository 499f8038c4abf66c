// Package sink applies change events from JetStream to PostgreSQL.
//
// One durable pull consumer feeds an assembler that groups the events of a
// Mongo multi-document transaction (same lsid and txnNumber) into one unit
// and releases it only when every event of it has arrived. Units are
// applied in batches, each batch one Postgres transaction that also
// records the consumer's stream position; messages are acknowledged only
// after that commit.
//
// Effectively once: cdc.doc_versions keeps, per document, the position
// (cluster time, index in transaction) last applied. An event at or behind
// it is skipped, so redelivery, replay and reordering in the stream (which
// happens when a publish is retried after a NATS outage) change nothing.
// A delete leaves a tombstone position, so an older insert cannot
// resurrect the row.
//
// Errors are classified (Classify): retryable errors retry the same batch
// with capped backoff forever and never dead-letter; poison events are
// isolated with savepoints and dead-lettered alone (a Mongo transaction
// together) while the rest of the batch commits; fatal errors stop Run.
package sink
