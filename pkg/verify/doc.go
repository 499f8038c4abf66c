// Package verify proves, at any moment, that PostgreSQL holds exactly what
// MongoDB holds for every replicated collection, and says precisely where
// it does not. It is the engine of `cdc verify`.
//
// For each collection it runs these checks (names as in the report):
//
//   - count: Mongo CountDocuments (never an estimate) against the rows of
//     the table (soft-deleted rows excluded), corrected for the changes the
//     sink applied between the two reads (see "Live traffic").
//   - idmap_mongo_to_pg: every Mongo _id has an id_map entry and its row.
//   - idmap_pg_to_mongo: every row has an id_map entry of this collection
//     and that entry names a live Mongo document.
//   - document_diff: every document (or a sample) run through the same
//     transform as the sink (Mapping.Row) and compared column by column
//     with its row, child tables included as sets. Values are compared in
//     a canonical form per type: numeric as exact decimals, timestamptz to
//     the microsecond the sink stores, jsonb semantically, text[] in
//     order, references resolved through id_map to legacy ids.
//   - money_sums: for every numeric column (child tables included) the sum
//     over the compared documents, in total and per status, Mongo side
//     added in Go with shopspring/decimal over the transform's values,
//     Postgres side computed by Postgres as sum(col)::text; compared
//     exactly, never as float.
//   - fk_integrity: every reference column and every child's parent
//     column points at an existing row.
//
// and, when both payments and fundsLedger are verified, the ledger
// reconciliation checks (ledger_*: settled payments have their release or
// refund entries, no double release or refund, no over-disbursement, the
// payment's escrow state equals its last entry's, no entry without its
// payment).
//
// # Nothing is truncated
//
// Collections are read in _id order in chunks (Config.ChunkSize) and every
// chunk is compared with the rows of exactly those documents, so memory is
// bounded by the chunk, not the collection. There is no LIMIT anywhere
// except the number of examples a check keeps (Config.Examples); the counts
// of a check are always complete.
//
// # Live traffic
//
// The two databases are read at different moments, so a document may
// change between the reads. Each Mongo read is bracketed by cluster times
// [lo, hi] (the operationTime of a ping before it and of the read itself).
// A document whose row differs is re-checked: verify waits until the sink
// has consumed every change up to hi (the sink's position in
// cdc.sink_positions, or the newest dead-lettered event, has passed hi; or
// the oplog holds no change of a replicated collection between that
// position and hi), re-reads Postgres, and, when the row's applied version
// (cdc.doc_versions) is newer than lo, re-reads Mongo. A mismatch is
// reported only when it is seen twice with the same Mongo document and the
// same row version after the sink passed the read (or when the document has
// an open dead letter, which explains it); what is still unsettled after
// Config.RecheckWait is reported as a mismatch saying so. Counts are
// corrected with the inserts and deletes the oplog records between the
// Mongo count and the sink's position.
//
// # Failures
//
// Run returns a Report; every check in it has passed, failed or errored.
// Report.OK is true only when every check ran and passed. An unreachable
// database aborts the run with an *UnreachableError naming the system.
package verify
