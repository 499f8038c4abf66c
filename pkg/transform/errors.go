package transform

import (
	"errors"
	"fmt"
)

// Rejection is a document the mapping refuses: the field, the offending
// value (as text, truncated for very long values) and why. A rejection is
// poison for that one document: it goes to the dead-letter store and the
// pipeline continues with the next one.
type Rejection struct {
	Collection string
	Field      string
	Column     string
	Value      string
	Reason     string
}

func (r *Rejection) Error() string {
	if r.Field == "" {
		return fmt.Sprintf("%s: rejected: %s", r.Collection, r.Reason)
	}
	return fmt.Sprintf("%s.%s -> %s: rejected value %s: %s", r.Collection, r.Field, r.Column, r.Value, r.Reason)
}

// AsRejection unwraps a *Rejection.
func AsRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}

// ErrSchemaMismatch marks a mapping that does not fit the live Postgres
// catalog. It is systemic: the sink refuses to start.
var ErrSchemaMismatch = errors.New("transform does not match the Postgres schema")

// ErrInvalidMapping marks a mapping file that is malformed.
var ErrInvalidMapping = errors.New("invalid transform mapping")
