package cli

import (
	"errors"

	"github.com/amanat/cdc/pkg/dlq"
	"github.com/amanat/cdc/pkg/replay"
)

// flagTerms is a library error restated in the command line's words: the
// libraries name an input by what it is (a Filter's selectors, a range's
// start), the command line by the flag that gives it. It unwraps to the
// library's error, so the exit code is decided as before.
type flagTerms struct {
	msg string
	err error
}

func (e *flagTerms) Error() string { return e.msg }
func (e *flagTerms) Unwrap() error { return e.err }

// incompleteRecovery is what to do about a retry refused for a Mongo
// transaction that is not whole (dlq.IncompleteError).
const incompleteRecovery = "reopen closed parts (cdc dlq reopen --id N --reason ...), replay the transaction from the oplog (cdc replay oplog), " +
	"or drop it (cdc dlq drop --txn ID --reason ...)"

// inFlagTerms restates, for printing, the library refusals whose fix is a
// flag: by their types, never their text. The commands return these
// errors as the libraries made them (not wrapped), so the restatement
// replaces the message whole; any other error is returned as it is.
func inFlagTerms(err error) error {
	var (
		rangeErr   *replay.OplogRangeError
		incomplete *dlq.IncompleteError
	)
	switch {
	case errors.Is(err, dlq.ErrNoFilter):
		return &flagTerms{"name the dead letters: --id, --collection (optionally with --doc), --txn, or --all", err}
	case errors.Is(err, dlq.ErrNoReason):
		return &flagTerms{"--reason is required: say why, it is kept with the entry and in its history", err}
	case errors.As(err, &rangeErr):
		return &flagTerms{rangeErr.Text("--from", "--to"), err}
	case errors.As(err, &incomplete):
		return &flagTerms{incomplete.Error() + "\n" + incompleteRecovery, err}
	}
	return err
}
