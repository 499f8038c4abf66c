// Package fault is the replicator's one error vocabulary. Every component
// sorts its errors into three classes by what its caller should do with
// them, never by what their messages say:
//
//   - Retryable: the world is briefly wrong (a system unreachable, a
//     serialization failure, a leader election). Retry with backoff
//     (package backoff); nothing is lost meanwhile.
//   - Poison: one event's data is wrong (a constraint its row breaks, a
//     transform rejection). Dead-letter that event, go on with the rest.
//   - Fatal: the deployment is wrong, or retrying meets the same answer
//     (a schema mismatch, a lost oplog position). Stop loudly and name the
//     recovery.
//
// An error states its class by its type: a *Error (made with Class.Wrap or
// Class.Errorf) or any error type with a FaultClass method (Classed).
// ClassOf reads it from anywhere in a wrap chain. A component's own
// classifier (sink.Classify, tailer.Classify) asks ClassOf first and then
// decides the errors of its libraries by their types and codes (SQLSTATE,
// Mongo server codes, sentinels).
package fault

import (
	"errors"
	"fmt"
)

// Class is how a component reacts to an error. The zero value is
// Retryable: an error nobody classified is retried (and a component that
// keeps failing says so), which loses nothing.
type Class int

const (
	// Retryable errors are retried with backoff; they never dead-letter.
	Retryable Class = iota
	// Poison errors belong to one event's data: the event is
	// dead-lettered and the others go on.
	Poison
	// Fatal errors stop the component: retrying cannot fix them.
	Fatal
)

// String is the class's name in logs and metric labels.
func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Poison:
		return "poison"
	case Fatal:
		return "fatal"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Wrap returns err marked with class c; its message is err's. A nil err
// stays nil.
func (c Class) Wrap(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Class: c, Err: err}
}

// Errorf is fmt.Errorf(format, args...) marked with class c.
func (c Class) Errorf(format string, args ...any) error {
	return &Error{Class: c, Err: fmt.Errorf(format, args...)}
}

// Error is an error marked with its class. Its message is Err's, so
// marking an error never changes what an operator reads.
type Error struct {
	Class Class
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the marked error.
func (e *Error) Unwrap() error { return e.Err }

// FaultClass makes *Error a Classed.
func (e *Error) FaultClass() Class { return e.Class }

// Classed is implemented by errors whose type decides their class (a
// *tailer.StreamError is always fatal): ClassOf finds them in a wrap chain
// without the error being wrapped in an *Error.
type Classed interface {
	error
	FaultClass() Class
}

// ClassOf returns the class stated by the first Classed error in err's
// tree (errors.As order: the outermost wins, so a component can re-mark
// what a library said), and whether any error there states one.
func ClassOf(err error) (Class, bool) {
	var c Classed
	if errors.As(err, &c) {
		return c.FaultClass(), true
	}
	return Retryable, false
}
