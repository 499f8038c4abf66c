package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/amanat/cdc/pkg/bus"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/amanat/cdc/pkg/state"
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
	if errors.Is(err, transform.ErrSchemaMismatch) || errors.Is(err, ErrStreamChanged) || errors.Is(err, ErrStreamGap) ||
		errors.Is(err, bus.ErrLaneLayout) {
		return Fatal
	}
	var fe *FatalError
	if errors.As(err, &fe) {
		return Fatal
	}
	var de *divergenceError
	if errors.As(err, &de) {
		return Poison
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return classifySQLState(pgErr.Code)
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
	// Anything else retries: nothing commits twice, and a sink that keeps
	// failing turns unready after Config.FailingAfter (Sink.failing).
	return Retryable
}

// classifySQLState decides by the SQLSTATE class (its first two
// characters, PostgreSQL Appendix A). Errors that follow the row (its
// data, its constraints, the limits its values hit, the triggers it fires)
// are poison: the unit is dead-lettered and the pipeline goes on. Errors
// of the deployment are fatal. The server's own trouble, and any class
// not listed, retries.
func classifySQLState(code string) Class {
	if len(code) < 2 {
		return Retryable
	}
	switch code[:2] {
	case "22", // data exception (out of range, invalid text, bad UTF-8)
		"23", // integrity constraint violation
		"54", // program limit exceeded (index row too large, too many columns)
		"P0", // raise_exception from a trigger (ledger immutability)
		"44", // WITH CHECK OPTION violation
		"27", // triggered data change violation
		"2F", // SQL routine exception (a trigger function)
		"38", // external routine exception
		"39": // external routine invocation exception
		return Poison
	case "42", "28", "3D", "3F", "0A":
		// undefined column/table, privileges, wrong database or schema,
		// feature not supported: the deployment is wrong.
		return Fatal
	}
	// 08 connection, 53 resources, 57 operator intervention, 58 system,
	// 40 rollback (serialization, deadlock), 55 lock not available, XX
	// internal, and anything unknown.
	return Retryable
}

// FatalError stops the sink.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// ErrStreamGap means the stream lost events the sink had not applied
// (limits or age removed them, or someone purged it). Fatal: replay or
// re-snapshot is needed.
var ErrStreamGap = errors.New("stream lost unapplied events")

func gapError(stream string, pos state.Position, first uint64) error {
	return &FatalError{Err: fmt.Errorf("%w: the sink applied stream %s up to sequence %d (cluster time %s) but the next message is %d; "+
		"messages %d..%d are gone. Replay from the oplog what they held (cdc replay oplog --from %s), then move the position past the gap "+
		"(cdc position set --seq %d)",
		ErrStreamGap, stream, pos.Seq, pos.ClusterTime, first, pos.Seq+1, first-1, pos.ClusterTime, first-1)}
}

// ErrStreamChanged means the stream is not the one the sink's position
// belongs to.
var ErrStreamChanged = errors.New("the stream is not the one the sink position belongs to")

// StreamChangedError says how the stream differs and how to recover.
// Fatal: nothing is applied from a stream whose sequences mean nothing to
// the position.
type StreamChangedError struct {
	Stream, Consumer string
	Position         state.Position
	Created          time.Time
	Why              string
}

func (e *StreamChangedError) Error() string {
	return fmt.Sprintf("stream %s (created %s) is not the stream consumer %s's position belongs to (sequence %d of a stream created %s): %s. "+
		"Events after cluster time %s may be missing from this stream: replay them from the oplog (cdc replay oplog --from %s) or "+
		"re-snapshot, then accept this stream with `cdc position adopt` (the sink then applies it from its first message; the version guard skips what is applied)",
		e.Stream, e.Created.Format(time.RFC3339Nano), e.Consumer, e.Position.Seq, fmtTime(e.Position.StreamCreated), e.Why,
		e.Position.ClusterTime, e.Position.ClusterTime)
}

func (e *StreamChangedError) Unwrap() error { return ErrStreamChanged }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "(not recorded)"
	}
	return t.Format(time.RFC3339Nano)
}

// DefaultOwner is this process's identity in a fence: host, pid and a
// random nonce (a restarted process is another instance).
func DefaultOwner() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s:%d:%04x", host, os.Getpid(), rand.Uint32N(1<<16))
}
