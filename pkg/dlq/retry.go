package dlq

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// Retry re-applies the open entries f selects, widened to every open entry
// of their Mongo transactions, in source order, in one Postgres
// transaction through the sink's applier (version guard, transactions
// whole, parking). If a transaction is still not whole among the open
// entries it refuses with *IncompleteError and changes nothing.
//
// In the apply transaction, entries whose events were applied or found
// superseded are closed (status retried) with a history row each; entries
// dead-lettered again stay open with attempts+1, their new class and
// reason in their history (the first ones are kept); an entry the sink
// found without its whole transaction stays open with a history row
// naming the missing indexes. With dryRun it selects, checks and reports
// (Refused) without changing anything; a refusal returns the report too,
// with Refused set.
func Retry(ctx context.Context, pool *pgxpool.Pool, set *transform.Set, f Filter, dryRun bool) (Report, error) {
	var rep Report
	if !f.Named() {
		return rep, ErrNoFilter
	}
	sel, err := state.SelectRetry(ctx, pool, f)
	if err != nil {
		return rep, err
	}
	rep.Selected, rep.Added, rep.Entries = len(sel.Entries), len(sel.Added), results(&sel.Selection)
	if len(sel.Gaps) > 0 {
		rep.Refused = sel.Gaps
		if dryRun {
			return rep, nil
		}
		return rep, &IncompleteError{Gaps: sel.Gaps}
	}
	if dryRun || len(sel.Entries) == 0 {
		return rep, nil
	}
	msgs, places, err := retryMessages(sel.Entries)
	if err != nil {
		return rep, err
	}
	retrying := make([]string, len(sel.Entries))
	for i, e := range sel.Entries {
		retrying[i] = e.EventID
	}
	var settled []settledEntry
	a := sink.NewApplier(pool, set, "", "")
	b := sink.NewBatch(set, msgs)
	b.Retrying = retrying
	b.After = func(ctx context.Context, tx pgx.Tx, res *sink.Result) error {
		outs, s, err := settle(sel.Entries, places, res.Outcomes)
		if err != nil {
			return err
		}
		settled = s
		return state.MarkRetried(ctx, tx, outs)
	}
	_, err = a.Apply(ctx, b)
	if err != nil {
		return rep, fmt.Errorf("retry: %w", err)
	}
	for i, s := range settled {
		rep.Entries[i].Outcome, rep.Entries[i].Status = s.outcome, s.status
		switch s.outcome {
		case sink.OutcomeApplied:
			rep.Applied++
		case sink.OutcomeSkipped:
			rep.Skipped++
		case sink.OutcomeDeadLettered, sink.OutcomeParked:
			rep.DeadLettered++
		case sink.OutcomeIncomplete:
			rep.Incomplete++
		}
		if s.status == state.StatusRetried {
			rep.Closed++
		}
	}
	return rep, nil
}

// txnPlace is an event's place in its Mongo transaction (txnID "" outside
// one, or unknown).
type txnPlace struct {
	txnID string
	index int
	last  bool
}

// retryMessages turns entries into the stream messages to re-apply, and
// places each in its transaction (from the entry, else from its envelope:
// entries recorded before transactions were kept).
func retryMessages(entries []Entry) ([]sink.Raw, map[int64]txnPlace, error) {
	msgs := make([]sink.Raw, 0, len(entries))
	places := make(map[int64]txnPlace, len(entries))
	for _, e := range entries {
		raw, err := envelope(e.Event)
		if err != nil {
			return nil, nil, fmt.Errorf("dead letter %d: %w (drop it with a reason if it cannot be repaired)", e.ID, err)
		}
		msgs = append(msgs, sink.Raw{Seq: uint64(e.StreamSeq), Data: raw})
		switch {
		case e.TxnID != "" && e.TxnIndex != nil:
			places[e.ID] = txnPlace{txnID: e.TxnID, index: *e.TxnIndex, last: e.TxnLast}
		default:
			if ev, err := event.Unmarshal(raw); err == nil && ev.Source.Txn != nil {
				places[e.ID] = txnPlace{txnID: ev.Source.Txn.ID(), index: ev.Source.Txn.Index, last: ev.Source.Txn.Last}
			}
		}
	}
	return msgs, places, nil
}

// envelope is the BSON envelope of a stored event: canonical Extended
// JSON, or, for an event that was not even BSON, the bytes the sink kept
// as hex (re-applied as they came, so they are dead-lettered again under
// the same event id).
//
// An envelope whose strings hold NUL characters (which jsonb cannot store)
// is kept as {"bson_hex"}: its exact bytes.
func envelope(stored json.RawMessage) ([]byte, error) {
	var asHex struct {
		Undecodable *string `json:"undecodable_hex"`
		BSON        *string `json:"bson_hex"`
	}
	if json.Unmarshal(stored, &asHex) == nil && (asHex.Undecodable != nil || asHex.BSON != nil) {
		h := asHex.Undecodable
		if h == nil {
			h = asHex.BSON
		}
		b, err := hex.DecodeString(*h)
		if err != nil {
			return nil, fmt.Errorf("stored event is not hex: %w", err)
		}
		return b, nil
	}
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON(stored, true, &raw); err != nil {
		return nil, fmt.Errorf("stored event is not canonical Extended JSON: %w", err)
	}
	return raw, nil
}

// settledEntry is one entry after a retry.
type settledEntry struct {
	outcome string
	status  state.Status
}

// settle decides, from the sink's outcome of each entry's event, what the
// retry records: applied and skipped entries are closed; dead-lettered
// and parked ones were re-recorded by the sink and stay open; incomplete
// ones stay open with a history row naming the missing indexes. An entry
// without an outcome, or with one this package does not know, fails the
// retry (the caller rolls it back): it must never guess.
func settle(entries []Entry, places map[int64]txnPlace, outcomes map[string]string) ([]state.RetryOutcome, []settledEntry, error) {
	var outs []state.RetryOutcome
	settled := make([]settledEntry, len(entries))
	var incomplete []int
	for i, e := range entries {
		o, ok := outcomes[e.EventID]
		if !ok {
			return nil, nil, fmt.Errorf("the sink reported no outcome for dead letter %d (event %s); nothing was changed", e.ID, e.EventID)
		}
		settled[i].outcome = o
		switch o {
		case sink.OutcomeApplied:
			outs = append(outs, state.RetryOutcome{ID: e.ID, Outcome: state.OutcomeApplied})
			settled[i].status = state.StatusRetried
		case sink.OutcomeSkipped:
			outs = append(outs, state.RetryOutcome{ID: e.ID, Outcome: state.OutcomeSkipped})
			settled[i].status = state.StatusRetried
		case sink.OutcomeDeadLettered, sink.OutcomeParked:
			settled[i].status = state.StatusOpen
		case sink.OutcomeIncomplete:
			settled[i].status = state.StatusOpen
			incomplete = append(incomplete, i)
		default:
			return nil, nil, fmt.Errorf("dead letter %d (event %s): the sink's outcome %q is not one a retry can record; nothing was changed", e.ID, e.EventID, o)
		}
	}
	reasons := incompleteReasons(entries, places, incomplete)
	for _, i := range incomplete {
		outs = append(outs, state.RetryOutcome{ID: entries[i].ID, Outcome: state.OutcomeIncomplete, Class: state.ClassIncomplete,
			Reason: reasons[entries[i].ID]})
	}
	return outs, settled, nil
}

// incompleteReasons says, for each entry at the indexes incomplete, which
// part of its transaction the retry did not have.
func incompleteReasons(entries []Entry, places map[int64]txnPlace, incomplete []int) map[int64]string {
	out := map[int64]string{}
	if len(incomplete) == 0 {
		return out
	}
	// The parts of each transaction among everything retried.
	var placed []state.DeadLetter
	for _, e := range entries {
		if p, ok := places[e.ID]; ok && p.txnID != "" {
			ix := p.index
			placed = append(placed, state.DeadLetter{ID: e.ID, EventID: e.EventID, Collection: e.Collection, DocKey: e.DocKey,
				TxnID: p.txnID, TxnIndex: &ix, TxnLast: p.last, Status: e.Status})
		}
	}
	gaps := map[string]state.TxnGap{}
	for _, g := range state.TxnGaps(placed) {
		gaps[g.TxnID] = g
	}
	for _, i := range incomplete {
		e := entries[i]
		p, ok := places[e.ID]
		if !ok || p.txnID == "" {
			out[e.ID] = "retried without its whole Mongo transaction (the sink found it incomplete; the transaction is not recorded with the entry)"
			continue
		}
		g, ok := gaps[p.txnID]
		switch {
		case !ok:
			out[e.ID] = fmt.Sprintf("retried without its whole Mongo transaction %s (the sink found it incomplete)", p.txnID)
		case g.Last >= 0:
			out[e.ID] = fmt.Sprintf("retried without its whole Mongo transaction %s: indexes %v of 0..%d were not among the retried events", p.txnID, g.Missing, g.Last)
		default:
			out[e.ID] = fmt.Sprintf("retried without its whole Mongo transaction %s: no retried event was its last (indexes missing: %v)", p.txnID, g.Missing)
		}
	}
	return out
}
