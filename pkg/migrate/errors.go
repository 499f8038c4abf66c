package migrate

import (
	"errors"
	"fmt"
)

// ErrPending is returned by RequireCurrent when the database lacks
// migrations this binary ships.
var ErrPending = errors.New("migrate: database schema is behind this binary")

// ErrUnknownVersion is returned by RequireCurrent when the database has
// migrations this binary does not know: a newer binary migrated it.
var ErrUnknownVersion = errors.New("migrate: database schema is ahead of this binary")

// MigrationError reports the migration that failed, with the ones the same
// call applied before it. PostgreSQL's own error (a *pgconn.PgError, for a
// failing statement) is reachable with errors.As.
type MigrationError struct {
	Version   int64
	Name      string
	Direction string
	// Applied lists the migrations this call completed before the failure;
	// they stay applied.
	Applied []Result
	Err     error
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("migrate: %s %s (version %d) failed: %v", e.Direction, e.Name, e.Version, e.Err)
}

func (e *MigrationError) Unwrap() error { return e.Err }
