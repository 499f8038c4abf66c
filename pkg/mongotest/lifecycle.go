package mongotest

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Collection and database lifecycle events of change streams: drop,
// dropDatabase, rename and invalidate, as mongod produces them.
//
// Which entries a stream sees (src/mongo/db/pipeline/
// change_stream_filter_helpers.cpp, buildOperationFilter): drop of a watched
// collection; rename whose source or target is watched; dropDatabase of the
// watched database, except on collection streams (which are invalidated by
// the per-collection drop that precedes it).
//
// Which entries invalidate a stream (document_source_change_stream_check_
// invalidate.cpp, isInvalidatingCommand; buildInvalidationFilter in
// change_stream_filter_helpers.cpp; https://www.mongodb.com/docs/manual/
// reference/change-events/invalidate/):
//
//   - a collection stream: drop of the collection, rename from or onto it
//     (and so a dropDatabase, through its drop entries);
//   - a database stream: dropDatabase only; a collection drop or rename in
//     it is an ordinary event;
//   - a cluster stream: nothing.
//
// Event shapes (change_stream_event_transform.cpp, ChangeStreamDefault
// EventTransformation::applyTransformation): drop has ns {db, coll};
// dropDatabase has ns {db} only ("leave the collection name empty");
// rename has ns (the source) and to (the target); invalidate has _id,
// operationType, clusterTime and wallTime and no ns (the check-invalidate
// stage builds it from those four fields). The invalidate's resume token is
// the invalidating event's token with the fromInvalidate flag set.
//
// Order and closing: the check-invalidate stage sits before the user's
// stages (DocumentSourceChangeStream::_buildPipeline in
// document_source_change_stream.cpp), so the invalidating event and then
// the invalidate go through the user's $match/$project like any event: a
// $match on ns.coll removes dropDatabase and invalidate. Whether or not the
// invalidate passed, the next pull from the stage throws
// ChangeStreamInvalidated, and the aggregate/getMore handler ends the batch,
// sets postBatchResumeToken to the invalidate's token and does not keep the
// cursor (cursor id 0) (src/mongo/db/commands/run_aggregate.cpp,
// getFirstBatch; src/mongo/db/commands/getmore_cmd.cpp; server test
// jstests/change_streams/start_after_invalidation_exception.js). A batch
// already full when the invalidate is produced ends with the cursor open;
// the next getMore then returns an empty batch with cursor id 0.
//
// Resuming: resumeAfter an invalidate token fails with InvalidResumeToken
// (260) "Attempting to resume a change stream using 'resumeAfter' is not
// allowed from an invalidate notification"; startAfter the same token opens
// a stream that starts after the invalidate and is not invalidated again by
// the same event (assertIsLegalSpecification in
// document_source_change_stream.cpp; _startAfterInvalidate in the
// check-invalidate stage). resumeAfter the invalidating event's own token
// replays the invalidate.
//
// What the Go driver v1.17 makes of the close (mongo/change_stream.go,
// loopNext): when a getMore returns cursor id 0 with an empty batch, Next
// and TryNext return false with Err() nil and ID() 0, and the change
// stream's ResumeToken is not moved to that reply's postBatchResumeToken
// (updatePbrtFromCommand is skipped once the cursor is dead); when the last
// batch holds events, the last event's ResumeToken is the
// postBatchResumeToken, i.e. the invalidate token.

func init() {
	codeNames[50865] = "Location50865"
}

// watchesNS reports whether the collection namespace ns is one of the
// stream's namespaces (the namespace regexes of
// DocumentSourceChangeStream::getNsRegexForChangeStream: one collection;
// every non-system collection of the database; every non-system collection
// outside admin, config and local).
func (c *csCursor) watchesNS(ns nsKey) bool {
	switch {
	case c.cluster:
		switch ns.db {
		case "admin", "config", "local":
			return false
		}
		return !strings.HasPrefix(ns.coll, "system.")
	case c.coll == "":
		return ns.db == c.db && !strings.HasPrefix(ns.coll, "system.")
	default:
		return ns == nsKey{c.db, c.coll}
	}
}

// produceInvalidate builds the invalidate event of c.pendingInvalidate, runs
// it through the user's stages and marks the stream invalidated: its
// position becomes the invalidate token, and the next scan step closes the
// cursor. keep is false when a user stage filtered the event out. Caller
// holds s.mu.
func (c *csCursor) produceInvalidate() (ev bsoncore.Document, keep bool, err error) {
	e := c.pendingInvalidate
	c.pendingInvalidate = nil
	tok := resumeToken{ts: e.ts, seq: e.seq, invalidate: true}
	c.invalidated = &tok
	c.last = tok
	ev = bsoncore.NewDocumentBuilder().
		AppendDocument("_id", tok.doc()).
		AppendString("operationType", "invalidate").
		AppendTimestamp("clusterTime", e.ts.T, e.ts.I).
		AppendDateTime("wallTime", e.wall).
		Build()
	return c.applyStages(ev)
}
