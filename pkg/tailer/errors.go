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
