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
	rep, err := changeStatus(f, reason, dryRun, string(state.OutcomeDropped),
		func() (*state.Selection, error) { return state.SelectOpen(ctx, db, f, false) },
		func() (*state.Selection, error) { return state.DropDeadLetters(ctx, db, f, reason) })
	if !dryRun {
		rep.Dropped = len(rep.Entries)
	}
	return rep, err
}

// Reopen makes the dropped or retried entries f selects open again (its
// Status narrows to one of the two), widened to every closed entry of
// their Mongo transactions: status open with reason, and a history row
// each. An open entry parks its document's later events again until it is
// retried or dropped. It refuses an empty reason (ErrNoReason). With
// dryRun it reports what it would reopen.
func Reopen(ctx context.Context, db state.DB, f Filter, reason string, dryRun bool) (Report, error) {
	rep, err := changeStatus(f, reason, dryRun, "reopened",
		func() (*state.Selection, error) { return state.SelectClosed(ctx, db, f) },
		func() (*state.Selection, error) { return state.ReopenDeadLetters(ctx, db, f, reason) })
	if !dryRun {
		rep.Reopened = len(rep.Entries)
	}
	return rep, err
}

// changeStatus is Drop's and Reopen's common part: check the selection
// and the reason, then preview (dry run) or act, and report each entry
// with outcome.
func changeStatus(f Filter, reason string, dryRun bool, outcome string, preview, act func() (*state.Selection, error)) (Report, error) {
	var rep Report
	if !f.Named() {
		return rep, ErrNoFilter
	}
	if strings.TrimSpace(reason) == "" {
		return rep, ErrNoReason
	}
	run := act
	if dryRun {
		run = preview
	}
	sel, err := run()
	if err != nil {
		return rep, err
	}
	rep.Selected, rep.Added, rep.Entries = len(sel.Entries), len(sel.Added), results(sel)
	if !dryRun {
		for i := range rep.Entries {
			rep.Entries[i].Outcome = outcome
		}
	}
	return rep, nil
}
