package sink

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// Classify decides what an apply error means, in fault's classes: the
// class an error states by its type (fault.ClassOf) wins; then transform
// rejections and row-specific SQLSTATEs are poison (the event is
// dead-lettered and the rest of the batch commits), a schema that does not
// match, a changed or gapped stream, a lane layout that differs and the
// deployment's SQLSTATEs are fatal (the sink stops loudly), and everything
// else (Postgres unreachable, serialization failure, deadlock, connection
// reset) is retryable: retried with backoff, forever, never
// dead-lettered.
func Classify(err error) fault.Class {
	if err == nil {
		return fault.Retryable
	}
	if c, ok := fault.ClassOf(err); ok {
		return c
	}
	if _, ok := transform.AsRejection(err); ok {
		return fault.Poison
	}
	if errors.Is(err, transform.ErrSchemaMismatch) || errors.Is(err, ErrStreamChanged) || errors.Is(err, ErrStreamGap) ||
		errors.Is(err, bus.ErrLaneLayout) {
		return fault.Fatal
	}
	var de *divergenceError
	if errors.As(err, &de) {
		return fault.Poison
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return classifySQLState(pgErr.Code)
	}
	// Anything else retries (pgconn.SafeToRetry, timeouts, net.Error,
	// context.DeadlineExceeded and errors nobody knows): nothing commits
	// twice, and a sink that keeps failing turns unready after
	// Config.FailingAfter (Sink.failing).
	return fault.Retryable
}

// classifySQLState decides by the SQLSTATE class (its first two
// characters, PostgreSQL Appendix A). Errors that follow the row (its
// data, its constraints, the limits its values hit, the triggers it fires)
// are poison: the unit is dead-lettered and the pipeline goes on. Errors
// of the deployment are fatal. The server's own trouble, and any class
// not listed, retries.
func classifySQLState(code string) fault.Class {
	if len(code) < 2 {
		return fault.Retryable
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
		return fault.Poison
	case "42", "28", "3D", "3F", "0A":
		// undefined column/table, privileges, wrong database or schema,
		// feature not supported: the deployment is wrong.
		return fault.Fatal
	}
	// 08 connection, 53 resources, 57 operator intervention, 58 system,
	// 40 rollback (serialization, deadlock), 55 lock not available, XX
	// internal, and anything unknown.
	return fault.Retryable
}

// ErrStreamGap means the stream lost events the sink had not applied
// (limits or age removed them, or someone purged it). Fatal: replay or
// re-snapshot is needed.
var ErrStreamGap = errors.New("stream lost unapplied events")

func gapError(stream string, pos state.Position, first uint64) error {
	return fault.Fatal.Errorf("%w: the sink applied stream %s up to sequence %d (cluster time %s) but the next message is %d; "+
		"messages %d..%d are gone. Replay from the oplog what they held (cdc replay oplog --from %s), then move the position past the gap "+
		"(cdc position set --seq %d)",
		ErrStreamGap, stream, pos.Seq, pos.ClusterTime, first, pos.Seq+1, first-1, pos.ClusterTime, first-1)
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
