// Package tailer reads one MongoDB database's change stream and publishes
// every change of the configured collections to JetStream as an
// event.Event.
//
// Guarantees:
//   - The checkpoint is the resume token of the newest event such that it
//     and every event before it were acknowledged by JetStream. It is saved
//     only after those acknowledgements, never before (Conduit's rule).
//   - It also advances on an idle stream through the post-batch resume
//     token, so a quiet database never leaves a token that falls off the
//     oplog.
//   - It never points inside a Mongo transaction, so a restart re-reads a
//     transaction whole; the transaction's last event carries Txn.Last.
//   - Event ids are derived from resume tokens, so a range re-read after a
//     crash is dropped by JetStream's dedup window.
//   - A resume point that fell off the oplog (code 286) is fatal with
//     recovery instructions; the tailer never silently starts from "now".
//
// Run retries everything else (Mongo or NATS unreachable, failed
// publishes) with capped exponential backoff, restarting from the last
// durable checkpoint.
package tailer
