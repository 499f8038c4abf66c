package tailer

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/mongo"
)

// CodeChangeStreamHistoryLost is MongoDB's error when a change stream is
// asked to resume from a point the oplog no longer holds.
const CodeChangeStreamHistoryLost = 286

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

// IsFatal reports whether err stops the tailer rather than being retried.
func IsFatal(err error) bool {
	var f *FatalError
	return errors.As(err, &f) || errors.Is(err, ErrHistoryLost) || errors.Is(err, context.Canceled)
}

func isHistoryLost(err error) bool {
	var se mongo.ServerError
	if errors.As(err, &se) {
		return se.HasErrorCode(CodeChangeStreamHistoryLost)
	}
	return false
}
