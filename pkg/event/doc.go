// Package event defines the replicator's change-event envelope: the one
// format the tailer publishes to JetStream, the sink applies, the
// dead-letter store keeps and any other consumer may read.
//
// The envelope is one BSON document (version field "v", currently 1; see
// Event.Marshal for the layout). Document bodies (key, doc, pre,
// update.updated) are the source's own BSON bytes, so ObjectId, Decimal128,
// dates and int64 survive unchanged and any language with a BSON library
// (every MongoDB driver) can consume them; ExtJSON renders an envelope as
// canonical Extended JSON for people. BSON rather than JSON on the wire: a
// document decodes by slicing, where Extended JSON parsing cost ~100 µs per
// 600-byte document, more than the whole per-event budget. The event id is
// deterministic for change-stream events (derived from the resume token),
// so a tailer that re-reads a range after a crash publishes the same ids
// and JetStream's Nats-Msg-Id dedup drops the copies.
//
// Positions: every event carries the cluster time of its source operation
// and, inside a multi-document transaction, its index in that transaction.
// (cluster time, txn index) totally orders the changes of one document and
// is what the sink's version guard compares.
package event
