package sink

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// Batch is the work of one apply transaction and the only way into
// Applier.Apply. The live sink builds its batches from what the consumer
// delivered (units assembled across reads, the floor to record under its
// fence, open-transaction parts to set aside); replays and dead-letter
// retries build theirs from stream messages with NewBatch and may set the
// exported hooks, which the live sink leaves zero.
type Batch struct {
	units []*unit
	// floor is the low-water mark recorded with the batch (0: unchanged);
	// only a batch with a fence records it.
	floor uint64
	// fence is the live sink's hold on its consumer: checked first in the
	// transaction (the row stays locked until commit), and it records
	// floor. nil for replays and retries, which record no position.
	fence *state.Fence
	// spill are parts of open transactions to set aside.
	spill []*item
	// waitRoom is how many more events may be deferred waiting for a
	// parent; the units past it are dead-lettered. Negative: no bound.
	waitRoom int
	// incomplete are the events of transactions not whole in NewBatch's
	// messages: not applied, counted in Result.Incomplete.
	incomplete []*item

	// Before, when set, runs first inside the transaction (and again when
	// poison isolation starts it over): a replay forgets there what it
	// repairs, so the forget and the repair commit together.
	Before func(tx pgx.Tx) error
	// Retrying lists the event ids a dead-letter retry re-applies: their
	// own open dead letters do not park them (an earlier one of them still
	// parks a later one of the same document, in source-position order).
	Retrying []string
	// After, when set, runs inside the transaction after the units were
	// applied and dead letters recorded, just before commit; res is final
	// (a retry commits its marks with the outcomes in res.Outcomes).
	After func(ctx context.Context, tx pgx.Tx, res *Result) error
}

// Raw is one stream message for NewBatch.
type Raw struct {
	Seq uint64
	// Data is the envelope (bus.EventBytes of the message).
	Data []byte
	// Err, when set, is why a large event's envelope could not be read
	// (bus.IsLargePoison): Data is then the pointer's body and the event
	// is dead-lettered with Err.
	Err error
}

// NewBatch decodes msgs (stream order), transforms them and groups the
// events of each Mongo transaction, for an Apply with the guarantees of
// the live sink: version guard, transactions whole (a transaction whose
// events are not all in msgs is not applied and is reported in
// Result.Incomplete), poison dead-lettered. Decoding is this process's CPU
// and applying mostly Postgres, so a caller may build batch n+1 while
// batch n applies. Replays and retries use it with an Applier created with
// consumer "" (nothing waits in cdc.deferred_events: Result.Waiting says
// what would have).
func NewBatch(set *transform.Set, msgs []Raw) Batch {
	asm := newAssembler()
	for _, m := range msgs {
		if m.Err != nil {
			asm.add(decodeUnresolved(set, m.Seq, m.Data, m.Err))
			continue
		}
		asm.add(decode(set, m.Seq, m.Data))
	}
	b := Batch{units: asm.take(), waitRoom: -1}
	for _, ot := range asm.open {
		for _, it := range ot.items {
			b.incomplete = append(b.incomplete, it)
		}
	}
	return b
}
