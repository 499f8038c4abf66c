// Package state owns the replicator's bookkeeping in PostgreSQL: every
// table of schema cdc (positions with their fence, deferred events, dead
// letters with their history, the version guard). Its SQL lives here and
// nowhere else; the sink, the operator commands, status and verify call it
// through the typed API below, inside their own transactions where the
// write must commit with data rows.
//
// # The position
//
// cdc.sink_positions holds one row per consumer. stream_seq is a true
// low-water mark: every stream message at or below it is resolved, which
// means applied, skipped by the version guard, dead-lettered, or set aside
// in cdc.deferred_events by the same transaction that moved the position
// past it. A restart at any instant therefore re-finds every unresolved
// event: above the position in the stream, or at or below it in
// cdc.deferred_events. The row also records which stream the sequence
// belongs to (its creation time); sequences of another stream mean nothing
// to it.
//
// # The fence
//
// One sink applies a consumer at a time. An instance takes the consumer
// with AcquireFence: a session-level advisory lock (released by Postgres
// when the holder's connection dies, so a kill -9 frees it) plus a new
// epoch written into the position row. Every apply transaction calls
// Fence.Check first, which locks the row FOR UPDATE and compares the
// epoch: a zombie or second instance whose epoch was superseded cannot
// commit, whatever its lock connection believes. The position only moves
// forward (Fence.Advance takes the greater of the stored and new value).
//
// # Keyed lookups
//
// A batch looks up its keys (id_map entries, stored versions, parent rows,
// existing ledger rows) as one index probe per key: unnest the keys, then
// CROSS JOIN LATERAL a subquery that reads one row by its primary key,
// LIMIT 1. The LIMIT keeps the planner from flattening the subquery into a
// plain join, which it is free to hash. A table the sink has just started
// filling has no statistics until autovacuum analyzes it (a minute or
// more), and without them Postgres 15 planned the plain join as a hash of
// a sequential scan of the whole table, once per batch: the money-core
// benchmark spent half of its apply phase's Postgres time in one such
// lookup, growing with the table. A probe per key costs the same at any
// table size and with any statistics.
package state
