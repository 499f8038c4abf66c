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
//   - One writer at a time: every checkpoint write is checked against the
//     KV revision the tailer last read or wrote. A tailer that finds the
//     checkpoint held or moved by another stops publishing and stands by
//     until it stays unchanged for the standby takeover time (the holder
//     rewrites it every checkpoint interval, idle or not); a checkpoint
//     rewritten by a snapshot's hand-off makes it restart from it instead
//     (see fence.go).
//   - The holder publishes only under a valid lease: leaseTTL (four fifths
//     of the standby takeover) from the start of its last successful
//     checkpoint write, on the monotonic clock. Past it, it publishes
//     nothing until a revision-checked renewal succeeds; one that finds the
//     checkpoint moved makes it stand by. Its lease ends before any standby
//     may take over, without synchronised clocks (the argument is in
//     fence.go); what a stalled holder still lands is a duplicate.
//     Every message names its publisher in the Cdc-Tailer header.
//   - A full change stream (discard policy new) refuses publishes: the
//     tailer retries from its checkpoint with backoff, so nothing is
//     skipped, and says so at error level once a minute.
//
// Run retries everything else (Mongo or NATS unreachable, failed
// publishes) with capped exponential backoff, restarting from the last
// durable checkpoint.
//
// The checkpoint (pkg/checkpoint: checkpoint.Checkpoint, version 3;
// versions 1 and 2 are still read) is a JSON record in the bucket
// nats.checkpoint_bucket under tailer.<db> (checkpoint.Key). It carries the
// lease history: since when its holder holds it, the last takeover and how
// many there were (`cdc status` shows them). A snapshot's hand-off writes
// it with Owner checkpoint.HandoffOwner() and Handoff set (and no history).
// The record lives in its own package because the snapshot and `cdc
// status` read and write it too; the fence's rules (who may claim it,
// when) stay here.
package tailer
