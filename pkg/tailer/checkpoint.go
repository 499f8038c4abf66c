package tailer

import (
	"context"

	"github.com/amanat/cdc/pkg/checkpoint"
)

// CheckpointStore persists checkpoints with revision-checked writes. The
// tailer declares it (checkpoint.KVStore is the production one) so its
// fence can be tested against an in-memory store.
type CheckpointStore interface {
	// Load returns the stored checkpoint and its revision, or nil, 0 if
	// there is none.
	Load(ctx context.Context) (*checkpoint.Checkpoint, uint64, error)
	// Save stores cp if the stored revision is still rev (0: only if there
	// is no checkpoint) and returns the new revision. Otherwise it returns
	// a *checkpoint.MovedError (errors.Is checkpoint.ErrMoved) naming what
	// is stored.
	Save(ctx context.Context, cp *checkpoint.Checkpoint, rev uint64) (uint64, error)
}

// claimable reports whether a tailer with identity self may take cp over
// without waiting: it is its own, released, a snapshot's hand-off, or a
// version 1 checkpoint from before the fence. It is the fence's rule, not
// the record's, so it stays here.
func claimable(cp *checkpoint.Checkpoint, self string) bool {
	return cp.Owner == self || cp.Owner == "" || cp.Handoff || cp.Released
}

// tokenJSON is cp's token for messages ("none" for nil).
func tokenJSON(cp *checkpoint.Checkpoint) []byte {
	if cp == nil {
		return []byte("none")
	}
	return cp.Token
}
