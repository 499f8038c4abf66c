// Package oplog reads MongoDB's oplog window and judges how safe a change
// stream's resume point is.
//
// The oplog is a capped collection: its oldest entry moves forward as the
// primary writes. A change stream can resume only from a point the oplog
// still holds; a checkpoint older than the oldest entry is lost history
// (error 286) and the collections must be re-snapshotted. This package
// answers three questions, for the tailer, `cdc status` and the operator
// commands:
//
//   - Window: what range of cluster times does the oplog hold right now
//     (the first and last entries of local.oplog.rs in natural order)?
//   - Headroom: how long until a checkpoint falls off? With the oplog
//     rolling over at a steady rate the window length W stays constant and
//     the oldest entry trails the newest by W, so a checkpoint at C is lost
//     once the oldest entry passes C: in about C - oldest from now. Lag
//     (newest - C) eats into the window; headroom = W - lag.
//   - TokenTime: which cluster time does a resume token stand for? MongoDB
//     tokens (and the test server's) start with the KeyString-encoded
//     cluster time, so the time can be read without a server round trip.
//
// Monitor runs the headroom check periodically and logs a warning below a
// threshold; the tailer wires it with its checkpoint store. Nothing here
// writes to MongoDB. Reading local.oplog.rs needs the read privilege on the
// local database (clusterMonitor grants it).
package oplog
