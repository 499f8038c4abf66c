package dlq

import (
	"errors"
	"fmt"
	"strings"

	"github.com/amanat/cdc/pkg/state"
)

// ErrNoFilter refuses a Retry, Drop or Reopen that names nothing.
var ErrNoFilter = errors.New("name the dead letters: --id, --collection (optionally with --doc), --txn, or --all")

// ErrNoReason refuses a Drop or Reopen without the operator's reason.
var ErrNoReason = errors.New("--reason is required: say why, it is kept with the entry and in its history")

// ErrIncomplete means a retry's selection holds part of a Mongo
// transaction whose other events are not all open dead letters: applying
// it would break the transaction, so nothing was changed.
var ErrIncomplete = errors.New("a Mongo transaction is not whole among the open dead letters")

// IncompleteError is ErrIncomplete with the transactions concerned: the
// entries that belong together and the missing indexes.
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
	b.WriteString("\nreopen closed parts (cdc dlq reopen --id N --reason ...), replay the transaction from the oplog (cdc replay oplog), " +
		"or drop it (cdc dlq drop --txn ID --reason ...)")
	return b.String()
}

func (e *IncompleteError) Unwrap() error { return ErrIncomplete }
