// Package mongotest is an in-memory MongoDB server for tests. It speaks the
// MongoDB wire protocol over TCP and looks, to the official Go driver
// (go.mongodb.org/mongo-driver v1.17), like the primary of a one-member
// replica set running MongoDB 7.0, so that code written against a real
// replica set (CRUD, change streams, resume tokens, transactions) can be
// tested without a mongod:
//
//	srv := mongotest.Start(t) // New(Options{}) + t.Cleanup(srv.Close)
//	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
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
// Topology: by default hello/isMaster describe a writable primary of replica
// set Options.ReplicaSet (default "rs0") whose only host is Addr(), with wire
// versions 0-17, logical sessions and an electionId. hello deliberately
// omits topologyVersion so the driver polls (every heartbeat interval)
// instead of using streaming hello. Every reply carries $clusterTime (with a
// zero signature) and operationTime, so sessions and causal consistency
// work. Options.Topology "mongos" answers hello as a mongos does (msg
// "isdbgrid", no setName/hosts/primary/electionId: the server's
// src/mongo/s/commands/cluster_hello_cmd.cpp), so the driver sees a Sharded
// topology of one Mongos; the local database is refused ("Can't use 'local'
// database through mongos", 20) and otherwise it behaves as a one-shard
// cluster (it never produces what only several shards produce).
// Options.Topology "standalone" answers as a mongod without --replSet (no
// setName: src/mongo/db/repl/replication_info.cpp), so the driver sees a
// Single topology; $changeStream fails with 40573 "The $changeStream stage is
// only supported on replica sets" (document_source_change_stream.cpp,
// assertIsLegalSpecification), any command with txnNumber with
// IllegalOperation 20 "Transaction numbers are only allowed on a replica set
// member or mongos" (initialize_operation_session_info.cpp),
// replSetGetStatus with 76, and local.oplog.rs reads empty. For both, URI()
// has no replicaSet option. See topology.go.
//
// Commands: hello, isMaster, ping, buildInfo (Options.Version, default
// "7.0.0"; versionArray and featureCompatibilityVersion follow it), getParameter,
// getCmdLineOpts, serverStatus, hostInfo, whatsmyuri, connectionStatus,
// replSetGetStatus, startSession, endSessions, refreshSessions, insert,
// update, delete, findAndModify, find, getMore, killCursors, aggregate,
// count, distinct, listCollections, listDatabases, create, drop,
// dropDatabase, renameCollection, createIndexes, listIndexes, dropIndexes,
// dbStats, collStats,
// commitTransaction, abortTransaction, collMod (only
// changeStreamPreAndPostImages; other options fail with InvalidOptions 72).
// Anything else fails with
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
// ui, o, o2, wall), sorted by {$natural: ±1}, which is how operators read
// the oplog window. A top-level ts predicate ($eq, $gt, $gte, $lt, $lte)
// bounds the scan to the entries that can match, as the server's does
// since 4.3.1 (SERVER-36186; oplogscan.go): a lookup of one optime is a
// binary search, not a read of the oplog before it. Updates are {op: "u", o: {$v: 2, diff}, o2: {_id}} in
// the server's $v:2 diff format (sections d, u, i and s<field> sub-diffs,
// array diffs {a: true, u<index>}). A committed transaction is one
// {op: "c", ns: "admin.$cmd", o: {applyOps: [{op, ns, ui, o, o2}, ...]}}
// entry with lsid, txnNumber and prevOpTime; past 16 MiB of operations it
// is a chain of partialTxn: true entries linked by prevOpTime and ending
// with a count entry, on consecutive optimes (applyops.go). A transaction
// leaves the oplog whole: when its first entry is truncated all of it goes. TruncateOplog, Options.MaxOplogEntries
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
// rename, dropDatabase, invalidate), clusterTime, wallTime, ns, documentKey,
// fullDocument (insert/replace; for updates with fullDocument "updateLookup"
// the current document when the event is returned, or null; with
// "whenAvailable"/"required" the post-image recorded at write time),
// fullDocumentBeforeChange (pre-image, when requested), updateDescription
// {updatedFields, removedFields, truncatedArrays} computed as MongoDB's
// update diff does (only fields that really changed; a new subdocument is
// reported whole; $push appends as "arr.N"), and lsid/txnNumber for writes
// of multi-document transactions only (not for retryable writes).
//
// Lifecycle events follow mongod (lifecycle.go has the rules and their
// sources: change_stream_filter_helpers.cpp, change_stream_event_transform.cpp,
// document_source_change_stream_check_invalidate.cpp, run_aggregate.cpp,
// https://www.mongodb.com/docs/manual/reference/change-events/): drop has ns
// {db, coll}, dropDatabase ns {db} only, rename ns (the source) and to (the
// target), invalidate no ns. A collection stream is invalidated by a drop or
// a rename of its collection (from it or onto it) and so by a dropDatabase;
// a database stream only by dropDatabase (a drop or rename in it is an
// ordinary event); a cluster stream never. The user's $match/$project apply
// to these events and to the invalidate like to any event (a $match on
// ns.coll removes dropDatabase and invalidate), and whether or not the
// invalidate passed, the batch then ends with cursor id 0 and a
// postBatchResumeToken equal to the invalidate's token. resumeAfter an
// invalidate token fails with InvalidResumeToken (260, no label);
// startAfter it starts after the invalidate. resumeAfter, startAfter and
// startAtOperationTime are supported; without them the stream starts after
// the newest entry.
//
// Renames: the renameCollection admin command within one database, with
// dropTarget (a bool or the target's UUID), as mongod: Unauthorized (13)
// off admin, NamespaceNotFound (26) for a missing source, NamespaceExists
// (48) for an existing target without dropTarget, IllegalOperation (20)
// onto itself. The documents and the UUID move with the collection; the
// oplog gets the one c entry mongod writes ({renameCollection, to,
// stayTemp: false, dropTarget: <target UUID>}, o2 {numRecords} with
// dropTarget; no separate drop of the target), and streams a rename event.
// Renames across databases or inside admin/config/local are refused
// (CommandNotSupported 115). Transactions that wrote to either namespace are
// aborted (mongod would make the rename wait for them). See rename.go.
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
// keeps working) + the oplog position + an invalidate flag, and for a
// fragment of a split event 4 more hex digits with the fragment number.
// Tokens compare (as strings) in oplog order and are only meaningful to
// the Server that issued them.
//
// Pre- and post-images: only collections created or collMod'ed with
// changeStreamPreAndPostImages: {enabled: true} (listCollections reports it
// in options) record images, and only for writes made while it is on.
// Without them fullDocument/fullDocumentBeforeChange "whenAvailable" give
// null and "required" fails the stream with NoMatchingDocument (47), as the
// server's add_pre_image/add_post_image stages do; "updateLookup" is
// unaffected. Pre-image expiry is not emulated. See images.go.
//
// Event size: an event (after the user's stages) over 16 MiB + 16 KiB
// (BSONObjMaxInternalSize) fails the aggregate or getMore with
// BSONObjectTooLarge (10334, no resumable label), as mongod's
// _trySerializeToBson does; inserts over 16 MiB fail with 10334 and
// updates that would grow a document past it with 17419. Where
// Options.Version has it (7.0, 6.0.9+; otherwise 40324 unrecognized stage),
// a last stage $changeStreamSplitLargeEvent splits events over 16 MiB + 8
// KiB into fragments ({splitEvent: {fragment, of}}, top-level fields packed
// by size as the server does, each fragment with its own resume token;
// resuming from a fragment's token continues with the next fragment; a
// field that cannot fit fails with 7182500). See split.go.
//
// Transactions: a command with lsid, txnNumber, autocommit:false and
// startTransaction:true starts a transaction; later commands with the same
// lsid/txnNumber join it. Its writes go to an overlay that its own reads
// see (other clients see committed data only); commitTransaction applies
// them atomically, logged as one applyOps oplog entry (or a partialTxn
// chain over 16 MiB, see Oplog) whose events, one per write, share the
// commit entry's cluster time with increasing txnOpIndex and carry lsid
// {id, uid} and txnNumber. abortTransaction discards them. Retrying
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
// cross-database renames (refused), sharded clusters of more than one shard,
// pipeline-style updates, arrayFilters, $push $sort, projection operators, aggregation stages beyond those listed, change stream
// expanded events (create, createIndexes, ...), collMod options other than
// changeStreamPreAndPostImages (and no collMod oplog entry), prepared
// transactions, snapshot isolation for transaction reads (they read the latest
// committed data plus their own writes), transaction lifetime limits, and
// persistence: all data is lost on Close. Idle cursors are dropped after 10
// minutes, as in MongoDB.
package mongotest
