// Package mongotest is an in-memory MongoDB server for tests. It speaks the
// MongoDB wire protocol over TCP and looks, to the official Go driver
// (go.mongodb.org/mongo-driver v1.17), like the primary of a one-member
// replica set running MongoDB 7.0, so that code written against a real
// replica set (CRUD, change streams, resume tokens, transactions) can be
// tested without a mongod:
//
//	srv := mongotest.Start(t) // New(Options{}) + t.Cleanup(srv.Close)
//	client, err := mongo.Connect(ctx, options.Client().ApplyURI(srv.URI()))
//
// # What it emulates
//
// Wire protocol: the OP_QUERY handshake (answered with OP_REPLY) and OP_MSG
// for everything else, with body and document-sequence sections (the driver
// sends documents/updates/deletes as sequences; inline arrays work too) and
// optional checksums. Requests flagged moreToCome (unacknowledged writes)
// get no reply; replies never set moreToCome, and exhaustAllowed is
// ignored. There is no compression, TLS or authentication.
//
// Topology: hello/isMaster describe a writable primary of replica set
// Options.ReplicaSet (default "rs0") whose only host is Addr(), with wire
// versions 0-17, logical sessions and an electionId. hello deliberately
// omits topologyVersion so the driver polls (every heartbeat interval)
// instead of using streaming hello. Every reply carries $clusterTime (with a
// zero signature) and operationTime, so sessions and causal consistency
// work.
//
// Commands: hello, isMaster, ping, buildInfo (7.0.0), getParameter,
// getCmdLineOpts, serverStatus, hostInfo, whatsmyuri, connectionStatus,
// replSetGetStatus, startSession, endSessions, refreshSessions, insert,
// update, delete, findAndModify, find, getMore, killCursors, aggregate,
// count, distinct, listCollections, listDatabases, create, drop,
// dropDatabase, createIndexes, listIndexes, dropIndexes, dbStats, collStats,
// commitTransaction, abortTransaction. Anything else fails with
// CommandNotFound (59).
//
// Documents: each namespace stores documents keyed by _id (1, 1.0 and
// NumberLong(1) are the same _id) with an ordered _id index that follows
// MongoDB's cross-type BSON order (MinKey < null < numbers < strings <
// objects < arrays < binData < ObjectId < bool < date < timestamp < regex <
// MaxKey). A duplicate _id is write error 11000. Writes are O(1); the _id
// index is merged lazily on the next ordered read.
//
// Queries (find, count, delete/update filters, $match): equality on
// top-level and dotted paths (through arrays), $eq $ne $gt $gte $lt $lte
// (type-bracketed, as in MongoDB) $in $nin $exists $not $size $type $regex
// $elemMatch $and $or $nor. Sort on any fields (_id order is served from
// the index), skip, limit, batchSize, singleBatch, and simple top-level
// projections. Cursors stay on the server between getMores; results are
// materialised when the cursor is opened.
//
// Updates: replacement documents and the operators $set $unset $inc $mul
// $min $max $setOnInsert $currentDate $rename $push ($each, $position,
// $slice) $addToSet $pull $pop; multi, upsert (the new document is seeded
// from the filter's equality conditions), ordered/unordered batches, _id
// immutability (66), conflicting paths (40), n/nModified/upserted. $inc and
// $mul follow MongoDB's numeric promotion (int32 overflow becomes int64;
// int64 overflow is an error) and compute Decimal128 exactly, keeping the
// decimal scale. An update that changes nothing is not modified and writes
// no oplog entry.
//
// Aggregation without $changeStream: $match $sort $skip $limit $project
// $count and $group (_id null, a constant or a field path; $sum $count $min
// $max $first $last $avg $push), which covers CountDocuments.
//
// Oplog: every write appends an entry (cluster time = wall-clock seconds
// and an increment, strictly increasing) to an in-memory oplog that starts
// with an "initiating set" no-op, like a new replica set. find on
// local.oplog.rs returns entries shaped like real ones (ts, t, v, op, ns,
// ui, o, o2, wall, lsid, txnNumber), sorted by {$natural: ±1}, which is how
// operators read the oplog window. TruncateOplog, Options.MaxOplogEntries
// and Options.MaxOplogBytes (default 1 GiB, like a small real oplog) drop
// old entries, always keeping the newest; OldestOplogTime/LatestOplogTime
// report the window.
//
// Change streams: aggregate with a first $changeStream stage on a collection,
// a database (aggregate: 1) or the cluster (aggregate: 1 on admin with
// allChangesForCluster), followed by $match stages (same matcher as queries,
// applied to the event document) and simple top-level $project stages
// (removing _id fails the stream with ChangeStreamFatalError 280, as in
// MongoDB; other stages such as $addFields are accepted and ignored). Events have MongoDB 6/7's shape: _id
// ({_data: hex}), operationType (insert, update, replace, delete, drop,
// dropDatabase, invalidate), clusterTime, wallTime, ns, documentKey,
// fullDocument (insert/replace; for updates with fullDocument "updateLookup"
// the current document when the event is returned, or null; with
// "whenAvailable"/"required" the post-image recorded at write time),
// fullDocumentBeforeChange (pre-image, when requested), updateDescription
// {updatedFields, removedFields, truncatedArrays} computed as MongoDB's
// update diff does (only fields that really changed; a new subdocument is
// reported whole; $push appends as "arr.N"), and lsid/txnNumber for writes
// of multi-document transactions only (not for retryable writes). Dropping
// a watched collection (or, for a database stream, the database) produces
// drop/dropDatabase and then invalidate, and closes the cursor.
// resumeAfter, startAfter (also after invalidate) and startAtOperationTime
// are supported; without them the stream starts after the newest entry.
// Every aggregate and getMore reply carries a postBatchResumeToken that
// covers every entry scanned, so an idle stream's token advances with
// writes elsewhere and resuming from it returns exactly the later events.
// getMore waits up to maxTimeMS (Options.DefaultAwaitTime, 1s, without it)
// for a matching event and is woken at once by commits, by Close and when
// its connection is dropped. Resuming from a point older than the oldest
// retained entry fails with ChangeStreamHistoryLost (286, no resumable
// label); so does the getMore of an open stream that had not yet read a
// dropped entry.
//
// Resume tokens: _data is "82" + the cluster time as 16 hex digits (as in
// MongoDB's KeyString tokens, so code that extracts the time from a token
// keeps working) + the oplog position + an invalidate flag. Tokens compare
// (as strings) in oplog order and are only meaningful to the Server that
// issued them.
//
// Transactions: a command with lsid, txnNumber, autocommit:false and
// startTransaction:true starts a transaction; later commands with the same
// lsid/txnNumber join it. Its writes go to an overlay that its own reads
// see (other clients see committed data only); commitTransaction applies
// them atomically with one oplog entry per write operation, all sharing one
// cluster time with increasing txnOpIndex, and events carrying lsid {id,
// uid} and txnNumber. abortTransaction discards them. Retrying
// commitTransaction is idempotent. Two transactions writing the same
// document get WriteConflict (112, TransientTransactionError) for the
// second; a non-transactional write to a document a transaction has written
// aborts that transaction (its next command fails with NoSuchTransaction
// 251 + TransientTransactionError, which WithTransaction retries). Any error
// inside a transaction aborts it, as in MongoDB.
//
// Retryable writes: writes with lsid+txnNumber but without autocommit are
// executed once; a retry with the same txnNumber gets the recorded reply
// (so a write whose reply was lost to DropConnections is not applied twice).
//
// Fault injection: DropConnections closes every client connection (the
// driver reconnects, retries and resumes change streams); FailCommand makes
// the next N commands of a name fail with a code and error labels (the
// MongoDB failCommand fail point); FailCommandCloseConnection closes the
// connection instead of replying; TruncateOplog loses history; Stop and
// Restart take the server off the network and bring it back on the same
// address, like a mongod restart: open cursors and transactions in progress
// are lost, data, oplog and retryable-write history survive.
//
// # What it does not emulate
//
// Authentication, TLS, compression, streaming hello and exhaust cursors,
// secondaries/elections/read preference semantics (every read is served by
// the primary), write concern and read concern levels (accepted and
// ignored: everything is immediately majority-committed and durable until
// Close), secondary indexes (createIndexes records specs but they are not
// used or enforced, including unique), collations, text/geo queries, $expr,
// $where, $jsonSchema, validation, capped/time-series collections, views,
// renames, pipeline-style updates, arrayFilters, $push $sort, projection
// operators, aggregation stages beyond those listed, change stream
// expanded events (create, createIndexes, ...), collection-level
// pre/post-image configuration (whenAvailable/required always find the
// images), snapshot isolation for transaction reads (they read the latest
// committed data plus their own writes), transaction lifetime limits, and
// persistence: all data is lost on Close. Idle cursors are dropped after 10
// minutes, as in MongoDB.
package mongotest
