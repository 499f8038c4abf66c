package migrate

import (
	"errors"
	"fmt"
	"strings"
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

// ErrAdoptedDown is returned by a roll-back (run in direction "down"; today
// only the tests roll back) instead of rolling back a migration that an
// adoption recorded (see AdoptedTable).
var ErrAdoptedDown = errors.New("migrate: refusing to roll back an adopted migration")

// ErrAdoptRefused is what an *AdoptRefusedError unwraps to: the database
// has the application's tables and at least one difference from the
// migrations cannot be bridged without losing data or guessing.
var ErrAdoptRefused = errors.New("migrate: the existing tables cannot be adopted safely")

// DifferenceKind classifies why a difference refuses an adoption.
type DifferenceKind string

// The kinds of Difference.
const (
	// DiffMoney: a numeric column narrower than the migrations' (fewer
	// decimal places or integer digits): amounts written into it would be
	// rounded or refused. AdoptOptions.Widen (cdc migrate --widen)
	// converts it without loss, rewriting the table.
	DiffMoney DifferenceKind = "money"
	// DiffNarrower: a non-numeric column narrower than the migrations'
	// (integer where they have bigint); --widen converts it.
	DiffNarrower DifferenceKind = "narrower"
	// DiffLossy: a column that cannot hold the migrations' values exactly
	// and cannot be converted without loss (double precision money, a
	// larger scale than the migrations').
	DiffLossy DifferenceKind = "lossy"
	// DiffType: another kind of type (timestamp for timestamptz, text for
	// an enum or uuid); a person converts it.
	DiffType DifferenceKind = "type"
	// DiffMissingColumn: a column a mapping writes does not exist (or one
	// the migrations create cannot be added to a populated table).
	DiffMissingColumn DifferenceKind = "missing-column"
	// DiffMissingTable: a table a mapping writes exists nowhere.
	DiffMissingTable DifferenceKind = "missing-table"
	// DiffConflict: an object of the migrations' name exists with another
	// definition (a constraint, an index, a primary key).
	DiffConflict DifferenceKind = "conflict"
	// DiffUnwritable: a NOT NULL column without a default that nothing
	// writes, in a table the replicator inserts into.
	DiffUnwritable DifferenceKind = "unwritable"
	// DiffOwner: the migrating role cannot alter an object it must change.
	DiffOwner DifferenceKind = "owner"
	// DiffMigration: a migration that would have to be recorded without
	// running also changes schema cdc.
	DiffMigration DifferenceKind = "migration"
)

// Difference is one reason an adoption is refused.
type Difference struct {
	Kind DifferenceKind
	// Object names what differs: "seller_offers.price_amount", "table
	// payments", "index idx_pr_tags".
	Object string
	// Reason says what the database has, what the migrations or the
	// mappings need, and what would fix it.
	Reason string
}

func (d Difference) String() string { return fmt.Sprintf("%s [%s]: %s", d.Object, d.Kind, d.Reason) }

// AdoptRefusedError lists every difference that makes the existing tables
// unsafe to adopt; nothing was changed. It unwraps to ErrAdoptRefused.
type AdoptRefusedError struct {
	Differences []Difference
}

func (e *AdoptRefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migrate: adopting the existing tables refused, %d difference(s) cannot be adopted safely (nothing was changed):", len(e.Differences))
	for _, d := range e.Differences {
		b.WriteString("\n  ")
		b.WriteString(d.String())
	}
	return b.String()
}

func (e *AdoptRefusedError) Unwrap() error { return ErrAdoptRefused }

// StepError reports the adoption step that failed (1-based Index into
// Plan.Steps). The steps before it stay done; running cdc migrate again
// plans from what the database then has and resumes. PostgreSQL's error
// is reachable with errors.As.
type StepError struct {
	Index int
	Step  Step
	Err   error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("migrate: adoption step %d (%s) failed: %v; the steps before it stay done, run cdc migrate again once the cause is fixed", e.Index, e.Step.Summary, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }
