package tailer

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/fault"
)

// Server error codes and labels the tailer classifies change-stream errors
// by (never by message text). Names and numbers are MongoDB's
// (src/mongo/base/error_codes.yml in github.com/mongodb/mongo).
const (
	// CodeNoMatchingDocument (47): a change stream with fullDocument
	// "required" found no post-image for an update
	// (document_source_change_stream_add_post_image.cpp: "Change stream
	// was configured to require a post-image for all update events").
	CodeNoMatchingDocument = 47
	// CodeCappedPositionLost (136): the oplog position a getMore read from
	// was overwritten. Retried (resumed from the checkpoint; if the
	// checkpoint itself fell off the oplog the resume fails with 286).
	CodeCappedPositionLost = 136
	// CodeInvalidResumeToken (260): the resume token cannot be used, e.g.
	// resumeAfter an invalidate event's token ("cannot resume stream after
	// invalidate", jstests/change_streams/start_after_invalidation_exception.js
	// resumes with startAfter instead).
	CodeInvalidResumeToken = 260
	// CodeChangeStreamFatalError (280): the stream cannot continue (for
	// instance a user stage removed _id, the resume token).
	CodeChangeStreamFatalError = 280
	// CodeChangeStreamHistoryLost (286): the resume point is no longer in
	// the oplog.
	CodeChangeStreamHistoryLost = 286
	// CodeBSONObjectTooLarge (10334): a change event over 16 MB
	// (plan_executor_pipeline.cpp, _trySerializeToBson), without the
	// ResumableChangeStreamError label.
	CodeBSONObjectTooLarge = 10334

	// LabelResumable is the label servers (wire version 9+, 4.4+) put on
	// every error a change stream may resume after; the Go driver resumes
	// them itself on getMore (mongo/change_stream.go, isResumableError), and
	// the tailer resumes from its checkpoint when one reaches it.
	LabelResumable = "ResumableChangeStreamError"
)

// ErrHistoryLost means the tailer's resume point has fallen off the oplog:
// events between the checkpoint and the oldest oplog entry are gone from
// the source's history. It is fatal: the tailer never silently restarts
// from "now". The operator must re-snapshot the affected collections.
var ErrHistoryLost = errors.New("change stream history lost")

// HistoryLostError carries the recovery instructions.
type HistoryLostError struct {
	Database    string
	Collections []string
	Checkpoint  string
	Cause       error
}

func (e *HistoryLostError) Error() string {
	return fmt.Sprintf("%v: the resume point %s of database %q is no longer in the MongoDB oplog (code 286); "+
		"changes after it cannot be read from the source's history. Recovery: re-snapshot the collections "+
		"(cdc snapshot --collections %v) which also resets the tailer to the snapshot's start time, or replay "+
		"the gap from the JetStream stream if it still holds it; then restart. Cause: %v",
		ErrHistoryLost, e.Checkpoint, e.Database, e.Collections, e.Cause)
}

func (e *HistoryLostError) Unwrap() error { return ErrHistoryLost }

// FaultClass is fatal: the tailer never silently restarts from "now".
func (e *HistoryLostError) FaultClass() fault.Class { return fault.Fatal }

// StreamError is a change-stream error the server will answer the same
// way however often the tailer resumes from its checkpoint: fatal, with a
// message and recovery per code (10334, 260, 280, 47).
type StreamError struct {
	// Code is the server's error code.
	Code int32
	// Database is the watched database.
	Database string
	// Checkpoint says where the stream resumed from.
	Checkpoint string
	// DocumentKey names the document of a too-large event when the oplog
	// entry after the checkpoint told it ("" when unknown).
	DocumentKey string
	// Split says whether $changeStreamSplitLargeEvent was in the pipeline.
	Split bool
	// Cause is the server's error.
	Cause error
}

func (e *StreamError) Error() string {
	switch e.Code {
	case CodeBSONObjectTooLarge:
		doc := "the change event right after the checkpoint"
		if e.DocumentKey != "" {
			doc = "the change event of " + e.DocumentKey
		}
		fix := "upgrade MongoDB to 7.0 or 6.0.9+ (the tailer then splits large events with $changeStreamSplitLargeEvent and reassembles them), or reduce the document"
		if e.Split {
			fix = "a single top-level field of the event is over 16 MB, which $changeStreamSplitLargeEvent cannot split: reduce the document (or stop requesting pre-images with tailer.pre_images: false)"
		}
		return fmt.Sprintf("change stream on %q: %s is larger than 16 MB (BSONObjectTooLarge, code 10334), resuming from %s; "+
			"every resume meets it again, so the tailer stops. Recovery: %s, then restart; nothing after the checkpoint was skipped. Cause: %v",
			e.Database, doc, e.Checkpoint, fix, e.Cause)
	case CodeInvalidResumeToken:
		return fmt.Sprintf("change stream on %q: MongoDB refuses the resume token of %s (InvalidResumeToken, code 260); "+
			"the tailer never restarts from \"now\" on its own. Recovery: re-snapshot the replicated collections (cdc snapshot), "+
			"which hands the tailer a new checkpoint, then restart. Cause: %v", e.Database, e.Checkpoint, e.Cause)
	case CodeChangeStreamFatalError:
		return fmt.Sprintf("change stream on %q cannot continue from %s (ChangeStreamFatalError, code 280). "+
			"Recovery: check the MongoDB log for the event, re-snapshot the replicated collections (cdc snapshot), then restart. Cause: %v",
			e.Database, e.Checkpoint, e.Cause)
	case CodeNoMatchingDocument:
		return fmt.Sprintf("change stream on %q: an update has no post-image although tailer.full_document is post_image "+
			"(fullDocument: required; NoMatchingDocument, code 47), resuming from %s: the collection's changeStreamPreAndPostImages "+
			"were disabled or the images expired (expireAfterSeconds). Recovery: enable them on every replicated collection "+
			"(db.runCommand({collMod: \"<coll>\", changeStreamPreAndPostImages: {enabled: true}})) and re-snapshot the collection, "+
			"or set tailer.full_document: update_lookup; then restart. Cause: %v", e.Database, e.Checkpoint, e.Cause)
	}
	return fmt.Sprintf("change stream on %q from %s: server error %d. Cause: %v", e.Database, e.Checkpoint, e.Code, e.Cause)
}

func (e *StreamError) Unwrap() error { return e.Cause }

// FaultClass is fatal: every resume meets the same answer.
func (e *StreamError) FaultClass() fault.Class { return fault.Fatal }

// FaultClass is fatal: the checkpoint is right before the event, so a
// restart meets it again until the operator recovers.
func (e *LifecycleError) FaultClass() fault.Class { return fault.Fatal }

// TopologyError refuses a source that is not a replica set.
type TopologyError struct {
	// Kind is "mongos" or "standalone".
	Kind string
}

func (e *TopologyError) Error() string {
	what := "a standalone mongod (hello reports no setName)"
	why := "a standalone has no oplog and no change streams"
	if e.Kind == "mongos" {
		what = "a mongos router of a sharded cluster (hello msg \"isdbgrid\")"
		why = "events of different shards can share a cluster time, which the version guard and transaction grouping do not handle"
	}
	return fmt.Sprintf("mongo.uri points at %s: only replica sets are supported (%s). Point mongo.uri at the replica set's members", what, why)
}

// FaultClass is fatal: the source will not become a replica set by waiting.
func (e *TopologyError) FaultClass() fault.Class { return fault.Fatal }

// ImagesError refuses to start when a replicated collection lacks the
// changeStreamPreAndPostImages option the configured mode needs. It unwraps
// to a *config.FieldError (a configuration error: exit code 2).
type ImagesError struct {
	Database string
	// Field is the setting that needs the images.
	Field string
	// Missing lists the collections without the option; Absent those that
	// do not exist.
	Missing, Absent []string
}

func (e *ImagesError) Error() string {
	msg := fmt.Sprintf("%s needs changeStreamPreAndPostImages on every replicated collection of %q", e.Field, e.Database)
	for _, c := range e.Missing {
		msg += fmt.Sprintf("; %s does not have it: run db.getSiblingDB(%q).runCommand({collMod: %q, changeStreamPreAndPostImages: {enabled: true}})", c, e.Database, c)
	}
	for _, c := range e.Absent {
		msg += fmt.Sprintf("; %s does not exist: create it with db.getSiblingDB(%q).createCollection(%q, {changeStreamPreAndPostImages: {enabled: true}})", c, e.Database, c)
	}
	return msg + " (or set tailer.full_document: update_lookup and tailer.pre_images: false, accepting current instead of point-in-time documents)"
}

// Unwrap makes the refusal a configuration error.
func (e *ImagesError) Unwrap() error {
	return &config.FieldError{Field: e.Field, Reason: "collections lack changeStreamPreAndPostImages"}
}

// FaultClass is fatal: the collections' options change only by an
// operator's collMod.
func (e *ImagesError) FaultClass() fault.Class { return fault.Fatal }

// Classify decides what an error of Run means, in fault's classes:
// fault.Fatal stops the tailer (Run returns the error), anything else is
// retried from the checkpoint with backoff. The class an error states by
// its type wins (fault.ClassOf: a fault.Fatal mark, *StreamError,
// *HistoryLostError, *LifecycleError, *TopologyError, *ImagesError);
// ErrHistoryLost, bus.ErrLaneLayout and context.Canceled (the process is
// stopping) are fatal too. The tailer has no poison: skipping a change it
// cannot read would lose it, so such a change is fatal.
func Classify(err error) fault.Class {
	if c, ok := fault.ClassOf(err); ok {
		return c
	}
	if errors.Is(err, ErrHistoryLost) || errors.Is(err, context.Canceled) || errors.Is(err, bus.ErrLaneLayout) {
		return fault.Fatal
	}
	return fault.Retryable
}

// serverCode returns the code of a server error in err's chain.
func serverCode(err error) (mongo.ServerError, bool) {
	var se mongo.ServerError
	if errors.As(err, &se) {
		return se, true
	}
	return nil, false
}

// cause says why a retried error is retried, for the logs (key "cause");
// the class (fault) decides what happens.
type cause int

const (
	// causeUnknown: nothing tells; retried with backoff, and past
	// failing_after the tailer turns unready and says so at error level.
	causeUnknown cause = iota
	// causeResumable: the server labels it resumable, or it is 136:
	// resumed from the checkpoint.
	causeResumable
	// causeBus: NATS did not answer or acknowledge in time (a stream
	// leader election, a node lost, a slow server): retried from the
	// checkpoint like any retried error, named so the log says so.
	causeBus
)

func (c cause) String() string {
	switch c {
	case causeResumable:
		return "resumable"
	case causeBus:
		return "nats"
	}
	return "unknown"
}

// fatalCodes are the server codes every resume meets again: 10334, 260,
// 280, 286, 47.
var fatalCodes = []int32{CodeBSONObjectTooLarge, CodeInvalidResumeToken, CodeChangeStreamFatalError, CodeChangeStreamHistoryLost, CodeNoMatchingDocument}

// busErrors are the nats.go sentinels of a bus that did not answer: no
// stream leader (no responders / no response from stream), async
// publishes not acknowledged in time or stalled behind them, a request
// timed out, the connection closed or reconnecting.
var busErrors = []error{
	nats.ErrNoResponders, nats.ErrTimeout, nats.ErrConnectionClosed, nats.ErrConnectionReconnecting,
	jetstream.ErrNoStreamResponse, jetstream.ErrTooManyStalledMsgs, jetstream.ErrAsyncPublishTimeout,
}

// classifyServer decides a change-stream error by its server error code
// and label, and by the NATS client's sentinels: a fatal code (fatalCodes,
// even with the resumable label) is fault.Fatal and code names it;
// anything else is fault.Retryable and why says why, for the logs.
func classifyServer(err error) (class fault.Class, code int32, why cause) {
	se, ok := serverCode(err)
	if !ok {
		for _, b := range busErrors {
			if errors.Is(err, b) {
				return fault.Retryable, 0, causeBus
			}
		}
		return fault.Retryable, 0, causeUnknown
	}
	for _, c := range fatalCodes {
		if se.HasErrorCode(int(c)) {
			return fault.Fatal, c, causeUnknown
		}
	}
	if se.HasErrorLabel(LabelResumable) || se.HasErrorCode(CodeCappedPositionLost) {
		return fault.Retryable, 0, causeResumable
	}
	return fault.Retryable, 0, causeUnknown
}
