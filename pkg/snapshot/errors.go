package snapshot

import (
	"errors"
	"fmt"

	"github.com/amanat/cdc/pkg/event"
)

// ErrOtherSnapshot: an unfinished snapshot of other collections exists;
// resuming it or discarding it (--restart) is the operator's choice.
var ErrOtherSnapshot = errors.New("another snapshot is in progress")

// ErrConcurrent: the progress record changed under this run, which means
// a second `cdc snapshot` is running against the same database.
var ErrConcurrent = errors.New("concurrent snapshot")

// ErrHandoff: streaming would not cover every change from the snapshot's
// start time, and the snapshot cannot fix that safely by itself.
var ErrHandoff = errors.New("snapshot hand-off to streaming not possible")

// ErrTailerBehind: a batch of a referencing collection waited longer than
// snapshot.tailer_wait for the tailer to publish up to its read time.
var ErrTailerBehind = errors.New("tailer behind the snapshot")

// TailerBehindError says how far the tailer got.
type TailerBehindError struct {
	Collection string
	ReadTime   event.ClusterTime
	Checkpoint event.ClusterTime
	HasCP      bool
	Waited     string
}

func (e *TailerBehindError) Error() string {
	cp := "no checkpoint"
	if e.HasCP {
		cp = "checkpoint at " + e.Checkpoint.String()
	}
	return fmt.Sprintf("%v: a batch of %s read at cluster time %s waited %s for the tailer (%s) to publish up to it. "+
		"%s references other collections, so its snapshot events must reach the stream after the changes that created their parents. "+
		"Is the replicator (cdc run or cdc tail) running? Progress is saved: start it and run the same command again to resume, "+
		"or pass --no-wait-tailer (a child whose parent was created during the scan may then be dead-lettered until its own change event repairs it)",
		ErrTailerBehind, e.Collection, e.ReadTime, e.Waited, cp, e.Collection)
}

func (e *TailerBehindError) Unwrap() error { return ErrTailerBehind }
