package sink

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/amanat/cdc/pkg/transform"
)

// Class is how the sink reacts to an error.
type Class int

const (
	// Retryable errors (Postgres unreachable, serialization failure,
	// deadlock, connection reset) are retried with backoff, forever; they
	// never dead-letter.
	Retryable Class = iota
	// Poison errors belong to one event's data (a constraint violation on
	// its own row, a transform rejection): the event is dead-lettered and
	// the rest of the batch commits.
	Poison
	// Fatal errors are systemic (the schema does not match, permission
	// denied): the sink stops loudly.
	Fatal
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Poison:
		return "poison"
	}
	return "fatal"
}

// Classify decides what an apply error means.
func Classify(err error) Class {
	if err == nil {
		return Retryable
	}
	if _, ok := transform.AsRejection(err); ok {
		return Poison
	}
	if errors.Is(err, transform.ErrSchemaMismatch) {
		return Fatal
	}
	var fe *FatalError
	if errors.As(err, &fe) {
		return Fatal
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57", "58", "40", "55", "XX":
			// connection, resources, operator intervention (shutdown,
			// cancel), system, rollback (serialization, deadlock), lock
			// not available, internal: transient.
			return Retryable
		case "22", "23":
			// data exception, integrity constraint violation: the
			// event's data.
			return Poison
		case "42", "28", "3D", "3F", "0A":
			// undefined column/table, privileges, wrong database or
			// schema, feature not supported: the deployment is wrong.
			return Fatal
		case "P0":
			// raise_exception from a trigger (ledger immutability):
			// the event violates an invariant.
			return Poison
		}
		return Fatal
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return Retryable
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return Retryable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Retryable
	}
	// Unknown errors from the driver are connection trouble far more often
	// than anything else; retrying is safe because nothing commits twice.
	return Retryable
}

// FatalError stops the sink.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// ErrStreamGap means the stream lost events the sink had not applied
// (retention removed them). Fatal: replay or re-snapshot is needed.
var ErrStreamGap = errors.New("stream lost unapplied events")

func gapError(floor, first uint64) error {
	return &FatalError{Err: fmt.Errorf("%w: the sink applied up to sequence %d but the stream now starts at %d; "+
		"events %d..%d are gone. Re-snapshot the affected collections or replay the range from the oplog (cdc replay oplog)",
		ErrStreamGap, floor, first, floor+1, first-1)}
}
