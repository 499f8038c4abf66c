// Package replay re-publishes or re-applies what an operator names, to
// close a gap without double-applying anything:
//
//   - Oplog: a cluster-time range re-read through a change stream
//     (startAtOperationTime) and published with the tailer's ids
//     (event.TokenID), so JetStream's dedup window and the sink's version
//     guard make a second copy harmless. A range the oplog no longer holds
//     is refused with the oldest time still available.
//   - Stream: a JetStream sequence or time range re-applied to Postgres
//     through an ordered (ephemeral) consumer and a sink Applier without a
//     consumer name, so the live consumer's position is never touched.
//     With sink lanes each lane has its own stream and sequences: a
//     sequence range names its lane (StreamConfig.Lane), a time range
//     without one replays every lane as one replay (StreamLanes).
//   - IDs: documents re-read from MongoDB (a list, a file, or the
//     application's pg_dualwrite_gaps table) and published as refresh
//     events at a majority cluster time taken before the read (never the
//     read's own operationTime, which the server computes after it); a
//     document that no longer exists becomes a delete at that time, so
//     any write after it, which the tailer publishes later, wins.
//
// # Replay and the version guard
//
// The sink applies an event only if its position (cluster time, index in
// its transaction) is newer than the version stored for the document in
// cdc.doc_versions. That is what makes replays idempotent, and it is also
// why re-applying OLD events cannot repair a row that was deleted from
// Postgres behind the replicator's back while its version row stayed: the
// guard says "already applied" and skips it. Each command therefore looks
// for such lost rows among the documents it touches (FindLost: a version
// that is not a delete, but no row, or for uuid ids no id_map entry and
// row):
//
//   - Refresh events (ids) carry a cluster time T taken before the read:
//     every change at or before T is in the document read, and every
//     change after T (which the read may or may not contain) wins over
//     it. The refresh applies unless such a later change is applied
//     already (the row has it then) or the document's last change is
//     exactly at T; lost rows are forgotten (ForgetLost) before publishing
//     so even then the refresh applies.
//   - replay stream reports lost rows; with --force it forgets their
//     versions inside the very transaction that re-applies the batch
//     (sink.Batch.Before, run by sink.Applier.Apply), so the forget and the repair commit
//     together.
//   - replay oplog reports lost rows; with --force it forgets their
//     versions and publishes their events under ids suffixed
//     "~replay:<to>" (the original ids would be dropped by the dedup
//     window; every other event keeps its id), waits for the live sink to
//     apply them and, for a range with an explicit end, checks each
//     repaired document reached at least the version it had.
//
// Forgetting is safe while the sink runs (ForgetLostTx locks the version
// rows before it decides), and only lost documents are forgotten: a
// document whose row is present keeps its guard, so a replay can never
// move a row backwards. After a forced replay, a document that ends at an
// older version than the guard had before (a range that stops before its
// newest change) is reported as an error with the `replay ids` command
// that brings it to its current state.
//
// Every command can run while the daemon runs, is safe to run twice, and
// ends with a Report whose Errors count decides the exit code.
package replay
