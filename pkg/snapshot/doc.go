// Package snapshot loads (or re-loads) whole collections into the change
// stream with a consistent hand-off to streaming, resumably.
//
// # What a snapshot is
//
// A snapshot records a start time T (the operationTime of a majority read:
// every write at or before T is visible to the scan that follows), then
// scans each collection in _id order, in batches (find _id > last, sort
// _id, limit), and publishes every document as an event.OpSnapshot event
// with Source.ClusterTime = T to the collection's change-stream subject.
// Event ids are "snap:<db>.<coll>:<key>:<T>" and are the Nats-Msg-Id, so
// publishing the same document of the same snapshot twice stores it once
// (within JetStream's dedup window; the version guard covers the rest).
//
// # Hand-off to streaming
//
// A document is read at some time after T and published at position
// (T, 0). Every change after T reaches the sink through the tailer at a
// position after T, so it wins the version guard whether it is applied
// before or after the snapshot event; a change at T or before is already
// in the document the scan read. What must hold is that the tailer
// streams every change from T on. The snapshot makes sure of that before
// scanning, by reading the tailer's checkpoint (KV tailer.<db>) BEFORE
// recording T:
//
//   - a checkpoint exists and is still in the oplog: it was written by a
//     tailer that had published everything up to it, so it is at or
//     before T, and the tailer (running now or started later) streams on
//     from it. Nothing to do.
//   - no checkpoint: the tailer has never run (or it was deleted). The
//     snapshot creates one (KV create, which fails if a tailer wrote one
//     meanwhile; then it looks again) holding the resume token of a change
//     stream opened at T (the high-water-mark token, equivalent to
//     startAtOperationTime T), or at tailer.start_at when that is a
//     cluster time before T still in the oplog. Without it a tailer
//     started later with start_at "now" would skip the changes made
//     between T and its start.
//   - the checkpoint has fallen off the oplog (the tailer stopped with
//     ChangeStreamHistoryLost): changes after it are gone from the source
//     for every replicated collection, so the snapshot resets the
//     checkpoint to T, but only if it covers every replicated collection;
//     otherwise it refuses and says which collections to add.
//
// A resumed snapshot keeps its T and checks again: a checkpoint in the
// oplog is the tailer's progress from at or before T (it only moves
// forward), a deleted checkpoint is re-created at T, and if T itself has
// fallen off the oplog the snapshot refuses and asks for --restart.
//
// The one race the snapshot cannot close alone: a tailer starting for the
// very first time with start_at "now" during the hand-off overwrites the
// checkpoint with its own (KV put). The tailer should pin "now" with a KV
// create and resume from an existing checkpoint instead.
//
// # Order and the tailer barrier
//
// Collections are scanned parents first (Order: the mappings' references
// between the snapshotted collections, ties and cycles broken by the
// money-core order users, categories, requestTemplates, purchaseRequests,
// sellerOffers, payments, fundsLedger, derivedDestinations,
// trezorAccounts, pointTransactions), so a child's snapshot event follows
// its parent's in the stream and the sink, applying in stream order, finds
// the parent's id_map entry and row. Order alone is not enough while the
// application writes: a parent created after the parents' scan finished
// reaches the stream only through the tailer, and its child, read later by
// the scan, could be published before the tailer got there. So a batch of
// a collection that references other collections is published only once
// the tailer's checkpoint has reached the batch's read time
// (snapshot.tailer_wait bounds the wait; --no-wait-tailer skips it): by
// then every change the batch's documents can depend on is in the stream.
// The id_map mint policy would not make order irrelevant: minting gives
// the parent its uuid early, but the row's foreign key still needs the
// parent row.
//
// # Resumability
//
// Progress (T, the collections in order, per collection the last _id whose
// event JetStream acknowledged, counts) is a versioned JSON record in the
// KV bucket snapshot.progress_bucket, key snapshot.<db>, written after
// every acknowledged batch with optimistic concurrency (a second snapshot
// of the same database fails instead of interleaving). A crash or Ctrl-C
// loses at most the batch in flight; the next run with the same
// collections resumes after the last _id done, with the same T and
// therefore the same event ids. --restart discards an unfinished snapshot.
//
// _id order follows MongoDB's type brackets: a range query stays within
// the last _id's type, so when it runs short the scan continues with the
// documents whose _id is of a later-sorting type.
package snapshot
