package dlq

import (
	"context"
	"strings"

	"github.com/amanat/cdc/pkg/state"
)

// Drop closes the open entries f selects, widened to every open entry of
// their Mongo transactions, without applying them: status dropped with
// reason, and a history row each. The document's later events apply
// normally again. It refuses an empty reason (ErrNoReason). With dryRun
// it reports what it would drop.
func Drop(ctx context.Context, db state.DB, f Filter, reason string, dryRun bool) (Report, error) {
	var rep Report
	if !f.Named() {
		return rep, ErrNoFilter
	}
	if strings.TrimSpace(reason) == "" {
		return rep, ErrNoReason
	}
	var sel *state.Selection
	var err error
	if dryRun {
		sel, err = state.SelectOpen(ctx, db, f, false)
	} else {
		sel, err = state.DropDeadLetters(ctx, db, f, reason)
	}
	if err != nil {
		return rep, err
	}
	rep.Selected, rep.Added, rep.Entries = len(sel.Entries), len(sel.Added), results(sel)
	if !dryRun {
		rep.Dropped = len(sel.Entries)
		for i := range rep.Entries {
			rep.Entries[i].Outcome = string(state.OutcomeDropped)
		}
	}
	return rep, nil
}

// Reopen makes the dropped or retried entries f selects open again (its
// Status narrows to one of the two), widened to every closed entry of
// their Mongo transactions: status open with reason, and a history row
// each. An open entry parks its document's later events again until it is
// retried or dropped. It refuses an empty reason (ErrNoReason). With
// dryRun it reports what it would reopen.
func Reopen(ctx context.Context, db state.DB, f Filter, reason string, dryRun bool) (Report, error) {
	var rep Report
	if !f.Named() {
		return rep, ErrNoFilter
	}
	if strings.TrimSpace(reason) == "" {
		return rep, ErrNoReason
	}
	var sel *state.Selection
	var err error
	if dryRun {
		sel, err = state.SelectClosed(ctx, db, f)
	} else {
		sel, err = state.ReopenDeadLetters(ctx, db, f, reason)
	}
	if err != nil {
		return rep, err
	}
	rep.Selected, rep.Added, rep.Entries = len(sel.Entries), len(sel.Added), results(sel)
	if !dryRun {
		rep.Reopened = len(sel.Entries)
		for i := range rep.Entries {
			rep.Entries[i].Outcome = "reopened"
		}
	}
	return rep, nil
}
