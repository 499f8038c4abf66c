package sink

import (
	"github.com/amanat/cdc/pkg/event"
)

// Outcomes of an event, for Result.Counts and Result.Outcomes.
const (
	OutcomeApplied      = "applied"
	OutcomeSkipped      = "skipped" // behind the version guard, a duplicate, or superseded in its batch
	OutcomeDeadLettered = "dead_lettered"
	OutcomeParked       = "parked"
	// OutcomeWaiting: set aside in cdc.deferred_events for a parent that
	// has not arrived (policy wait).
	OutcomeWaiting = "waiting"
	// OutcomeIncomplete: part of a Mongo transaction not whole in the
	// batch (replays and retries only; the live sink defers such parts).
	OutcomeIncomplete = "incomplete"
)

// Result counts what a batch did.
type Result struct {
	Applied      int
	Skipped      int // at or behind the stored version, or no-ops
	DeadLettered int
	// Violations counts the dead-lettered events that broke an invariant
	// of their mapping (class violation: an append-only document updated,
	// deleted, or refreshed with other values than its stored row).
	Violations int
	// Incomplete counts events of transactions not whole in a NewBatch.
	Incomplete int
	// Waiting counts events set aside for a parent that has not arrived.
	Waiting int
	// NewWaiting counts the waiting events deferred for the first time;
	// WaitResolved the deferred waiting events this batch resolved
	// (applied, skipped or dead-lettered). With their sizes in bytes.
	NewWaiting, WaitResolved           int
	NewWaitingBytes, WaitResolvedBytes int64
	// Spilled counts open-transaction parts set aside; TxnResolved the
	// deferred transaction parts applied or dead-lettered.
	Spilled, TxnResolved int
	// RefillError is why re-applying child rows whose references waited
	// for a parent of this batch failed (their dangling records stay).
	RefillError string
	// ByCollection counts applied events per collection.
	ByCollection map[string]int
	// Counts counts events by collection, operation and outcome.
	Counts map[Count]int
	// Outcomes is each event's outcome by event id (a duplicate never
	// hides its original's).
	Outcomes map[string]string
	// LastClusterTime is the newest cluster time applied.
	LastClusterTime event.ClusterTime
	// dead are the items dead-lettered, for the DLQ stream.
	dead []*item
	// waiting are units set aside for a parent that has not arrived.
	waiting []*unit
}

// Count keys Result.Counts.
type Count struct {
	Collection string
	Op         event.Op
	Outcome    string
}

func newResult() Result {
	return Result{ByCollection: map[string]int{}, Outcomes: map[string]string{}}
}

func (r *Result) count(it *item, outcome string) {
	if r.Counts == nil {
		r.Counts = map[Count]int{}
	}
	coll := it.ev.Source.Coll
	r.Counts[Count{Collection: coll, Op: it.ev.Op, Outcome: outcome}]++
	if r.Outcomes == nil {
		r.Outcomes = map[string]string{}
	}
	if _, seen := r.Outcomes[it.ev.ID]; !seen || !it.noop {
		r.Outcomes[it.ev.ID] = outcome
	}
	switch outcome {
	case OutcomeApplied:
		r.Applied++
		if r.ByCollection == nil {
			r.ByCollection = map[string]int{}
		}
		r.ByCollection[coll]++
	case OutcomeSkipped:
		r.Skipped++
	}
}

func (r *Result) merge(o Result) {
	r.Applied += o.Applied
	r.Skipped += o.Skipped
	r.DeadLettered += o.DeadLettered
	r.Violations += o.Violations
	if o.RefillError != "" {
		r.RefillError = o.RefillError
	}
	for k, v := range o.ByCollection {
		if r.ByCollection == nil {
			r.ByCollection = map[string]int{}
		}
		r.ByCollection[k] += v
	}
	for k, v := range o.Counts {
		if r.Counts == nil {
			r.Counts = map[Count]int{}
		}
		r.Counts[k] += v
	}
	for k, v := range o.Outcomes {
		if r.Outcomes == nil {
			r.Outcomes = map[string]string{}
		}
		r.Outcomes[k] = v
	}
	if o.LastClusterTime.Compare(r.LastClusterTime) > 0 {
		r.LastClusterTime = o.LastClusterTime
	}
}
