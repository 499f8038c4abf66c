package dlq

import (
	"sort"

	"github.com/amanat/cdc/pkg/state"
)

// Report says what Retry, Drop or Reopen did (or, dry, would do). Its
// JSON is what the commands print with --json.
type Report struct {
	// Selected counts the entries acted on: those the filter named and
	// those Added to keep their Mongo transactions whole.
	Selected int `json:"selected"`
	Added    int `json:"added_for_transactions"`
	// Retry outcomes, per entry. DeadLettered counts the entries that
	// failed again (parked ones included); they stay open. Incomplete
	// counts entries the sink found without their whole transaction; they
	// stay open too.
	Applied      int `json:"applied"`
	Skipped      int `json:"skipped"`
	DeadLettered int `json:"dead_lettered_again"`
	Incomplete   int `json:"incomplete_transactions"`
	// Closed counts the entries a retry closed (applied or skipped).
	Closed   int `json:"closed"`
	Dropped  int `json:"dropped"`
	Reopened int `json:"reopened"`
	// Refused lists the transactions a retry refused (or, dry, would
	// refuse): not whole among the open entries.
	Refused []state.TxnGap `json:"refused,omitempty"`
	// Entries says what happened to each entry, in source order.
	Entries []EntryResult `json:"entries"`
}

// EntryResult is what an operation did to one entry.
type EntryResult struct {
	ID         int64  `json:"id"`
	EventID    string `json:"event_id"`
	Collection string `json:"collection"`
	DocKey     string `json:"doc_key"`
	TxnID      string `json:"txn_id,omitempty"`
	// Added: the filter did not name it; it belongs to the transaction of
	// an entry it did.
	Added bool `json:"added,omitempty"`
	// Outcome is the sink's outcome for a retry (applied, skipped,
	// dead_lettered, parked, incomplete), or dropped or reopened; "" in a
	// dry run.
	Outcome string `json:"outcome,omitempty"`
	// Status is the entry's status afterwards.
	Status state.Status `json:"status"`
}

func results(sel *state.Selection) []EntryResult {
	added := map[int64]bool{}
	for _, id := range sel.Added {
		added[id] = true
	}
	out := make([]EntryResult, len(sel.Entries))
	for i, e := range sel.Entries {
		out[i] = EntryResult{ID: e.ID, EventID: e.EventID, Collection: e.Collection, DocKey: e.DocKey, TxnID: e.TxnID,
			Added: added[e.ID], Status: e.Status}
	}
	return out
}

// AddedFor returns, per Mongo transaction, the ids of the entries added
// to keep it whole.
func (r Report) AddedFor() map[string][]int64 {
	out := map[string][]int64{}
	for _, e := range r.Entries {
		if e.Added {
			out[e.TxnID] = append(out[e.TxnID], e.ID)
		}
	}
	for _, ids := range out {
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	}
	return out
}

// StillOpen returns the ids of the entries that are open afterwards.
func (r Report) StillOpen() []int64 {
	var out []int64
	for _, e := range r.Entries {
		if e.Status == state.StatusOpen {
			out = append(out, e.ID)
		}
	}
	return out
}
