package dlq

import (
	"errors"
	"fmt"
	"strings"

	"github.com/amanat/cdc/pkg/state"
)

// ErrNoFilter refuses a Retry, Drop or Reopen whose Filter names nothing:
// no IDs, Collection (optionally with DocKey), TxnID or All. The command
// line says which flags name them.
var ErrNoFilter = errors.New("no dead letters named: give ids, a collection (optionally with a document), a transaction, or all")

// ErrNoReason refuses a Drop or Reopen whose reason is empty. The command
// line says which flag gives it.
var ErrNoReason = errors.New("a reason is required: it is kept with the entry and in its history")

// ErrIncomplete means a retry's selection holds part of a Mongo
// transaction whose other events are not all open dead letters: applying
// it would break the transaction, so nothing was changed.
var ErrIncomplete = errors.New("a Mongo transaction is not whole among the open dead letters")

// IncompleteError is ErrIncomplete with the transactions concerned: the
// entries that belong together and the missing indexes. The recovery
// (reopen the closed parts, replay the transaction, or drop it) is the
// command line's to word.
type IncompleteError struct {
	Gaps []state.TxnGap
}

func (e *IncompleteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "refused: %d Mongo transaction(s) not whole among the open dead letters; a retry applies a transaction whole or not at all, so nothing was changed:", len(e.Gaps))
	for _, g := range e.Gaps {
		b.WriteString("\n  ")
		b.WriteString(g.String())
	}
	return b.String()
}

func (e *IncompleteError) Unwrap() error { return ErrIncomplete }
