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
//   - document_diff: every document (or a sample) compared column by
//     column with its row, child tables included as sets. The transform
//     (Mapping.Row, the sink's code) only says which rows and columns the
//     document makes and gives the values of text, enum, boolean, integer,
//     jsonb and text[] columns; the values of money and identifiers are
//     verify's own (see "Independent of the sink" below). Values are
//     compared in a canonical form per type: numeric as exact decimals
//     against Postgres' numeric::text, timestamptz in UTC to the
//     microsecond (a BSON date is a millisecond: the row must hold exactly
//     it), jsonb semantically, text[] in order, references resolved
//     through id_map to legacy ids.
//   - money_sums: for every numeric column (child tables included) the sum
//     over the compared documents, in total and per status, Mongo side
//     added in Go with shopspring/decimal over the transform's values,
//     Postgres side computed by Postgres as sum(col)::text; compared
//     exactly, never as float.
//   - fk_integrity: every reference column and every child's parent
//     column points at an existing row.
//   - idmap_stray: every id_map entry of the collection stands for a
//     document: a live Mongo document, a tombstone or a version recorded
//     in cdc.doc_versions (stray.go).
//   - enum_completeness: every distinct value an enum-mapped field takes
//     in Mongo has a mapping, and its label is one of the column's
//     Postgres enum labels (enums.go).
//
// and, when both payments and fundsLedger are verified, the ledger
// reconciliation checks (ledger_*: settled payments have their release or
// refund entries, no double release or refund, no over-disbursement, the
// payment's escrow state equals its last entry's, no entry without its
// payment).
//
// # Independent of the sink
//
// A verifier that converts the document with the sink's code agrees with
// every mistake of that code. So the values that carry money and identity
// are decoded by verify itself from the BSON bytes (decode.go,
// independent.go), with nothing shared but the standard library:
// Decimal128 from its 128 bits (sign, exponent, coefficient; a
// non-canonical coefficient over 10^34 - 1 is zero, as IEEE 754-2008 and
// the MongoDB server read it; NaN and Infinity are no amount), int32,
// int64, doubles (their shortest round-trip form) and numeric strings;
// ObjectIds (the document's own key, objectid columns and the legacy ids
// of references) from their 12 bytes; dates from their milliseconds, in
// UTC, and created_at/updated_at the way those functions are defined.
// The result is compared with the text Postgres prints for the column
// (numeric::text, with only the trailing zeros of the column's scale
// dropped). A conversion bug in the sink, even one the transform would
// repeat inside verify, is a difference.
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
// # Continuous verification
//
// Continuous (continuous.go) runs the document comparison in the
// background of `cdc run` and `cdc sink` (verify.continuous.rate): every
// collection over and over at a bounded rate, a document in flight set
// aside rather than reported, and a difference counted only when it is
// still there after the re-check delay (Metrics, cdc.verify_mismatches
// for `cdc status`).
//
// # Failures
//
// Run returns a Report; every check in it has passed, failed or errored.
// Report.OK is true only when every check ran and passed. An unreachable
// database aborts the run with an *UnreachableError naming the system.
package verify
