package dial

import (
	"errors"

	"github.com/amanat/cdc/pkg/redact"
)

// Stage is the step of connecting that failed.
type Stage int

const (
	// StageParse: the connection string (or an option) is unusable;
	// retrying cannot help.
	StageParse Stage = iota + 1
	// StageOpen: the client or pool could not be created from a parsed
	// configuration.
	StageOpen
	// StagePing: the server did not answer within the timeout, or
	// refused the connection.
	StagePing
)

func (s Stage) String() string {
	switch s {
	case StageParse:
		return "parse"
	case StageOpen:
		return "open"
	case StagePing:
		return "ping"
	}
	return "unknown"
}

// Error is a failed connection: at which Stage, and the driver's error.
// Its message is the driver's with the connection string's credentials
// removed (drivers quote the string, or pieces of it); the callers add
// which system and address (redact.URL) in their own words.
type Error struct {
	Stage Stage
	// Err is the driver's error as it came: scrub it (redact.Scrub with
	// the connection string) before printing it on its own.
	Err error

	msg string
}

func newError(stage Stage, err error, conn string) *Error {
	return &Error{Stage: stage, Err: err, msg: redact.Scrub(err.Error(), conn)}
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the driver's error, for errors.Is and errors.As (a
// *pgconn.PgError, a certificate error, context.DeadlineExceeded).
func (e *Error) Unwrap() error { return e.Err }

// StageOf is the Stage of the *Error in err's chain, 0 when there is none.
func StageOf(err error) Stage {
	var e *Error
	if errors.As(err, &e) {
		return e.Stage
	}
	return 0
}
