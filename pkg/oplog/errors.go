package oplog

import (
	"errors"
	"fmt"

	"github.com/amanat/cdc/pkg/event"
)

// ErrNoOplog means local.oplog.rs has no entries or cannot be read: the
// server is not a replica-set member, or the user lacks the privilege.
var ErrNoOplog = errors.New("oplog not readable")

// ErrRangeLost is matched (errors.Is) by RangeLostError.
var ErrRangeLost = errors.New("range no longer in the oplog")

// RangeLostError says that a requested start point is older than the
// oldest entry the oplog still holds. Its message names that oldest time,
// which is what an operator needs to choose another recovery.
type RangeLostError struct {
	// From is the requested start.
	From event.ClusterTime
	// Oldest is the oldest cluster time still available.
	Oldest event.ClusterTime
}

func (e *RangeLostError) Error() string {
	return fmt.Sprintf("%v: the requested start %s (%s) is older than the oldest oplog entry; "+
		"the oldest time still available is %s (%s). Replay the part before it from JetStream "+
		"(cdc replay stream --since ...) if the stream still retains it, or re-snapshot the collections (cdc snapshot)",
		ErrRangeLost, e.From, e.From.Time().Format("2006-01-02T15:04:05Z"), e.Oldest, e.Oldest.Time().Format("2006-01-02T15:04:05Z"))
}

func (e *RangeLostError) Unwrap() error { return ErrRangeLost }

// CheckStart returns a *RangeLostError when from is older than oldest.
func CheckStart(from, oldest event.ClusterTime) error {
	if from.Compare(oldest) < 0 {
		return &RangeLostError{From: from, Oldest: oldest}
	}
	return nil
}
