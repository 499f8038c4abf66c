package checkpoint

import (
	"errors"
	"fmt"
)

// ErrMoved means a checkpoint write was refused because the stored
// checkpoint is no longer at the revision the writer last read or wrote:
// another writer (a tailer, a snapshot's hand-off, an operator) moved it
// or deleted it. It is the tailer's fence, and the snapshot's hand-off's
// cue to look again.
var ErrMoved = errors.New("checkpoint moved by another writer")

// MovedError is KVStore.Save's answer to a stale revision, with what is
// stored now, so the writer can tell who moved it without another read.
// errors.Is(err, ErrMoved) holds, and so does errors.Is for the store's
// own refusal (Cause).
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
func (e *MovedError) Holder() string { return e.Current.Holder() }

func (e *MovedError) Error() string {
	if e.Current == nil {
		return fmt.Sprintf("%v: checkpoint %s was deleted (expected revision %d)", ErrMoved, e.Key, e.Expected)
	}
	return fmt.Sprintf("%v: checkpoint %s is at revision %d written by %s (expected revision %d)",
		ErrMoved, e.Key, e.Revision, e.Holder(), e.Expected)
}

// Unwrap returns ErrMoved and the store's refusal.
func (e *MovedError) Unwrap() []error { return []error{ErrMoved, e.Cause} }
