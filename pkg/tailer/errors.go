package tailer

import (
	"context"
	"errors"
	"fmt"

	"github.com/amanat/cdc/pkg/bus"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/amanat/cdc/pkg/config"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// FatalError wraps errors that retrying cannot fix.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

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

// IsFatal reports whether err stops the tailer rather than being retried.
func IsFatal(err error) bool {
	var (
		f  *FatalError
		se *StreamError
		le *LifecycleError
		te *TopologyError
		ie *ImagesError
	)
	return errors.As(err, &f) || errors.As(err, &se) || errors.As(err, &le) || errors.As(err, &te) || errors.As(err, &ie) ||
		errors.Is(err, ErrHistoryLost) || errors.Is(err, context.Canceled) || errors.Is(err, bus.ErrLaneLayout)
}

// serverCode returns the code of a server error in err's chain.
func serverCode(err error) (mongo.ServerError, bool) {
	var se mongo.ServerError
	if errors.As(err, &se) {
		return se, true
	}
	return nil, false
}

// errorClass names how a change-stream error is handled.
type errorClass int

const (
	// classUnknown: retried with backoff; past failing_after the tailer
	// turns unready and says so at error level.
	classUnknown errorClass = iota
	// classResumable: the server labels it resumable, or it is 136: resumed
	// from the checkpoint.
	classResumable
	// classFatal: 10334, 260, 280, 286, 47.
	classFatal
	// classBus: NATS did not answer or acknowledge in time (a stream
	// leader election, a node lost, a slow server): retried from the
	// checkpoint like any retried error, named so the log says so.
	classBus
)

// busErrors are the nats.go sentinels of a bus that did not answer: no
// stream leader (no responders / no response from stream), async
// publishes not acknowledged in time or stalled behind them, a request
// timed out, the connection closed or reconnecting.
var busErrors = []error{
	nats.ErrNoResponders, nats.ErrTimeout, nats.ErrConnectionClosed, nats.ErrConnectionReconnecting,
	jetstream.ErrNoStreamResponse, jetstream.ErrTooManyStalledMsgs, jetstream.ErrAsyncPublishTimeout,
}

// classifyServer classifies err by server error code and label, and by
// the NATS client's sentinels (classBus).
func classifyServer(err error) (errorClass, int32) {
	se, ok := serverCode(err)
	if !ok {
		for _, b := range busErrors {
			if errors.Is(err, b) {
				return classBus, 0
			}
		}
		return classUnknown, 0
	}
	for _, c := range []int32{CodeBSONObjectTooLarge, CodeInvalidResumeToken, CodeChangeStreamFatalError, CodeChangeStreamHistoryLost, CodeNoMatchingDocument} {
		if se.HasErrorCode(int(c)) {
			return classFatal, c
		}
	}
	if se.HasErrorLabel(LabelResumable) || se.HasErrorCode(CodeCappedPositionLost) {
		return classResumable, 0
	}
	return classUnknown, 0
}

// ErrCheckpointMoved means a checkpoint write was refused because the
// stored checkpoint is no longer at the revision the writer last read or
// wrote: another writer (a tailer, a snapshot's hand-off, an operator)
// moved it. It is the tailer's fence.
var ErrCheckpointMoved = errors.New("checkpoint moved by another writer")

// MovedError is CheckpointStore.Save's answer to a stale revision, with
// what is stored now. errors.Is(err, ErrCheckpointMoved) holds.
type MovedError struct {
	Key string
	// Expected is the revision the write was checked against (0: none).
	Expected uint64
	// Revision and Current are the stored revision and checkpoint; Current
	// is nil (Revision 0) when the checkpoint was deleted.
	Revision uint64
	Current  *Checkpoint
	// Cause is the store's refusal.
	Cause error
}

// Holder names the current writer for messages.
func (e *MovedError) Holder() string { return holderName(e.Current) }

func (e *MovedError) Error() string {
	if e.Current == nil {
		return fmt.Sprintf("%v: checkpoint %s was deleted (expected revision %d)", ErrCheckpointMoved, e.Key, e.Expected)
	}
	return fmt.Sprintf("%v: checkpoint %s is at revision %d written by %s (expected revision %d)",
		ErrCheckpointMoved, e.Key, e.Revision, e.Holder(), e.Expected)
}

// Unwrap returns ErrCheckpointMoved and the store's refusal.
func (e *MovedError) Unwrap() []error { return []error{ErrCheckpointMoved, e.Cause} }

// holderName is how a checkpoint's writer is named in logs and /readyz.
func holderName(cp *Checkpoint) string {
	switch {
	case cp == nil:
		return "nobody (deleted)"
	case cp.Owner == "":
		return "a tailer without a fence (checkpoint version 1)"
	}
	return cp.Owner
}
