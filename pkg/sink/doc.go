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
// # Lanes
//
// With sink.lanes configured the work is split into lanes (lanes.go,
// members.go): each lane is a group of collections with its own stream
// (bus.StreamsConfig.LaneStream, subjects <prefix>.<lane>.>, so delivered
// sequences stay contiguous per lane and the gap check above holds per
// lane), its own durable consumer, position row and fence
// (LaneConsumer). Without lanes nothing changes: one stream, one consumer,
// the names of before. Several instances share the lanes: each puts its
// key in a JetStream KV bucket (MembersBucket, TTL MemberTTLFactor
// heartbeats) and runs a Sink for each lane the rendezvous hash (Assign)
// gives it over the live members; a lane no longer assigned is stopped
// gracefully (its fence released); a dead holder's lane is taken once its
// advisory lock is free. Membership only decides who tries: two instances
// that briefly disagree both start the lane's Sink, and the fence lets one
// apply it.
//
// A Mongo transaction is applied whole: every publisher routes all its
// events to the lane of its first event (bus.LaneRouter), where the
// assembler collects and commits it in one Postgres transaction. A
// document of another lane that the transaction touched therefore gets
// that event through the transaction's lane, while its other events come
// through its own lane, in no fixed order relative to it. Per-document
// order still holds because the version guard below is one row per
// document in cdc.doc_versions, shared by all lanes and locked FOR UPDATE
// by the applying transaction: whichever lane applies a newer version
// first, the older one is skipped when it comes. A child whose parent is
// in another lane and not applied yet is handled by its reference policy
// (wait: set aside and retried until the parent's lane applies it).
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
//
// # Layout
//
// The consumer loop (consumer.go: batches, acknowledgements, in-progress
// marks, the floor; reader.go: delivery order and redeliveries;
// reports.go: DLQ copies, trimming, lag) hands each batch to the applier
// through one small interface (batchApplier, Apply(ctx, Batch)). Beneath
// it: the one-transaction apply with poison isolation (apply.go, units.go,
// setaside.go, deadletter.go), references and their policies (refs.go,
// refill.go), id_map (idmap.go) and the set-based SQL (write.go). Replays
// and dead-letter retries use the same entry point with a NewBatch
// (batch.go). position.go reconciles the stream with the position
// Postgres holds.
package sink
