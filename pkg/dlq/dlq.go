package dlq

import (
	"context"

	"github.com/amanat/cdc/pkg/state"
)

// Entry is one dead letter (one row of cdc.dead_letters) as state reads
// it; its JSON is what `cdc dlq list --json` prints.
type Entry = state.DeadLetter

// Attempt is one row of an entry's history.
type Attempt = state.Attempt

// Filter selects entries. Retry, Drop and Reopen refuse one that names
// nothing (ErrNoFilter); they widen it to whole Mongo transactions.
type Filter = state.DeadLetterFilter

// Detail is one entry with its event and its history, oldest attempt
// first; its JSON is what `cdc dlq show` prints.
type Detail struct {
	Entry
	History []Attempt `json:"history"`
}

// List returns the entries f selects, oldest first, without their events.
func List(ctx context.Context, db state.DB, f Filter) ([]Entry, error) {
	return state.ListDeadLetters(ctx, db, f)
}

// Get returns one entry with its event; a missing id is
// state.ErrNoDeadLetter.
func Get(ctx context.Context, db state.DB, id int64) (*Entry, error) {
	return state.GetDeadLetter(ctx, db, id)
}

// History returns every attempt on entry id, oldest first.
func History(ctx context.Context, db state.DB, id int64) ([]Attempt, error) {
	return state.DeadLetterHistory(ctx, db, id)
}

// Show returns one entry with its event and history.
func Show(ctx context.Context, db state.DB, id int64) (*Detail, error) {
	e, err := state.GetDeadLetter(ctx, db, id)
	if err != nil {
		return nil, err
	}
	h, err := state.DeadLetterHistory(ctx, db, id)
	if err != nil {
		return nil, err
	}
	return &Detail{Entry: *e, History: h}, nil
}
