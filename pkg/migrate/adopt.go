package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/transform"
)

// Adopting an existing target.
//
// The application already has its tables in PostgreSQL (created by its own
// Drizzle migrations, with the audit's defects), and the migrations that
// create them here use plain CREATE TABLE, which fails on such a database.
// Up therefore looks before it migrates: when a pending migration would
// create an object the application's schema already has, and running that
// migration a second time on its own result fails (it was not written to
// upgrade in place, as 00002's id_map upgrade is), the database is adopted
// instead of migrated:
//
//  1. The migrations are run in a shadow: one transaction, always rolled
//     back, with public redirected to a scratch schema (and cdc to
//     another), reading back after each migration what PostgreSQL made of
//     it. That gives, for any number of migrations, what each one creates
//     and the schema the first K of them produce, where K is the last
//     pending migration whose objects the database already has.
//  2. That schema is compared with the live one. What is missing becomes a
//     step, written the way the audit asks for a live database: CHECK and
//     foreign keys added NOT VALID then validated, indexes built
//     CONCURRENTLY outside a transaction, NOT NULL through a validated
//     CHECK (so SET NOT NULL does not scan under its lock), the ledger's
//     triggers created and set ENABLE ALWAYS. What cannot be bridged
//     without losing money or guessing (a narrower numeric, a float amount,
//     a column a mapping writes that the table lacks, an object of the
//     migrations' name with another definition) refuses the whole
//     adoption, naming every difference (*AdoptRefusedError), before
//     anything is changed.
//  3. The steps run, then migrations 1..K are recorded in goose's version
//     table: those that change the application's schema are recorded
//     without running (the steps did their work), the others (the cdc
//     bookkeeping, data-only migrations) run as usual. Migrations after K
//     then run as usual.
//
// Every step is idempotent with respect to the plan: a failed adoption is
// resumed by running cdc migrate again, which plans from what the database
// then has. PlanUp computes the same plan without changing anything.

// DefaultLockTimeout bounds how long an adoption step waits for a lock that
// would block the application's writes while it waits (ALTER TABLE,
// CREATE TRIGGER): PostgreSQL queues every later query of the table behind
// a waiting ACCESS EXCLUSIVE request.
const DefaultLockTimeout = 10 * time.Second

// AdoptedTable lists the migrations an adoption recorded as applied
// without running them; Down and DownTo refuse to roll them back.
const AdoptedTable = "cdc.adopted_migrations"

// AdoptOptions tune the adoption of an existing database.
type AdoptOptions struct {
	// Mappings are the replicator's transforms: a column one of them
	// writes must exist (a missing one refuses the adoption rather than
	// being added empty beside where the application keeps the value).
	// Nil checks the migrations' schema only.
	Mappings *transform.Set
	// Widen allows converting narrower columns (numeric(18,8) where the
	// migrations have numeric(38,18), integer for bigint) to the
	// migrations' type. No value changes, but PostgreSQL rewrites the table
	// under an ACCESS EXCLUSIVE lock, so it is the operator's decision.
	Widen bool
	// LockTimeout bounds each blocking step's wait for its lock (default
	// DefaultLockTimeout). Steps that do not block writes (CREATE INDEX
	// CONCURRENTLY, VALIDATE CONSTRAINT) wait as long as they must.
	LockTimeout time.Duration
}

func (o AdoptOptions) lockTimeout() time.Duration {
	if o.LockTimeout <= 0 {
		return DefaultLockTimeout
	}
	return o.LockTimeout
}

// Step is one change an adoption makes.
type Step struct {
	// Table is the table the step changes ("" for types, functions,
	// extensions).
	Table string
	// Summary is one line saying what and why.
	Summary string
	// SQL is the statements, run in order, each on its own unless OneTx.
	SQL []string
	// OneTx runs SQL in one transaction.
	OneTx bool
	// Blocking is true for a step that takes a lock blocking the
	// application's writes (briefly, unless Rewrite); it waits at most
	// AdoptOptions.LockTimeout for it.
	Blocking bool
	// Rewrite is true when PostgreSQL rewrites the table (a widened
	// column type): the lock is held for the whole rewrite.
	Rewrite bool
}

// MigrationAction is what happens to a pending migration.
type MigrationAction string

const (
	// ActionApply: goose runs the migration and records it.
	ActionApply MigrationAction = "apply"
	// ActionRecord: the adoption's steps made its changes; goose's version
	// table records it as applied without running it.
	ActionRecord MigrationAction = "record"
)

// PlannedMigration is one pending migration and what happens to it.
type PlannedMigration struct {
	Version int64
	Name    string
	Action  MigrationAction
	// Why says why, for the migrations an adoption covers.
	Why string
}

// Plan is what Up does to a database: with Adopt, the steps that adopt
// the application's existing tables; then what happens to each pending
// migration.
type Plan struct {
	// Adopt is true when the database has objects pending migrations would
	// create: Steps run, then the migrations through Through are recorded.
	Adopt bool
	// Through is the last migration the adoption covers.
	Through int64
	// Reason says why there is (or is no) adoption.
	Reason      string
	Steps       []Step
	Migrations  []PlannedMigration
	Notes       []string
	Differences []Difference
}

// Err is the plan's refusal: an *AdoptRefusedError listing every
// difference, or nil.
func (p *Plan) Err() error {
	if len(p.Differences) == 0 {
		return nil
	}
	return &AdoptRefusedError{Differences: p.Differences}
}

// MappedColumns lists, per table of the application's schema, the columns
// the mappings of set write (id, mapped and soft-delete columns, child
// tables' parent columns).
func MappedColumns(set *transform.Set) map[string][]string {
	out := map[string][]string{}
	seen := map[string]bool{}
	add := func(table, col string) {
		if s, t, ok := strings.Cut(table, "."); ok {
			if s != "public" {
				return
			}
			table = t
		}
		if col == "" || seen[table+"."+col] {
			return
		}
		seen[table+"."+col] = true
		out[table] = append(out[table], col)
	}
	for _, m := range set.Mappings() {
		add(m.Table, m.ID.Column)
		if m.Delete == "soft" {
			add(m.Table, m.SoftDeleteColumn)
		}
		for _, c := range m.Columns {
			add(m.Table, c.Column)
		}
		for _, ch := range m.Children {
			add(ch.Table, ch.ParentColumn)
			for _, c := range ch.Columns {
				add(ch.Table, c.Column)
			}
		}
	}
	for t := range out {
		sort.Strings(out[t])
	}
	return out
}

// PlanUp returns what Up would do to the database, changing nothing: the
// shadow run happens in a transaction that is rolled back (it needs the
// CREATE privilege on the database, as migrating does). A refused
// adoption is a plan with Differences, not an error; the error is for a
// database that cannot be read.
func PlanUp(ctx context.Context, pgURL string, opts AdoptOptions) (*Plan, error) {
	db, err := open(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: plan for %s: %w", RedactURL(pgURL), err)
	}
	defer conn.Close()
	p, err := plan(ctx, conn, opts)
	if err != nil {
		return nil, fmt.Errorf("migrate: plan for %s: %w", RedactURL(pgURL), err)
	}
	return p, nil
}

// UpAdopting is Up with the adoption's options: it returns the plan it
// carried out and the migrations applied or recorded (Result.Adopted for
// the recorded ones). A refused adoption returns the plan and an
// *AdoptRefusedError, having changed nothing; a failed step a *StepError;
// a failed migration a *MigrationError.
func UpAdopting(ctx context.Context, pgURL string, log *zap.Logger, opts AdoptOptions) (*Plan, []Result, error) {
	if log == nil {
		log = zap.NewNop()
	}
	db, err := open(ctx, pgURL)
	if err != nil {
		return nil, nil, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("migrate: %s: %w", RedactURL(pgURL), err)
	}
	defer conn.Close()
	// One lock for the plan and everything it leads to, so that a replica
	// that waited finds the result (and nothing pending). goose's session
	// locker polls pg_try_advisory_lock: a waiter holds no snapshot that a
	// CREATE INDEX CONCURRENTLY here would wait for.
	locker, err := newLocker()
	if err != nil {
		return nil, nil, err
	}
	if err := locker.SessionLock(ctx, conn); err != nil {
		return nil, nil, fmt.Errorf("migrate: %s: take the migration lock: %w", RedactURL(pgURL), err)
	}
	defer func() {
		if uerr := locker.SessionUnlock(context.WithoutCancel(ctx), conn); uerr != nil {
			log.Warn("releasing the migration lock", zap.Error(uerr))
		}
	}()
	pl, err := plan(ctx, conn, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("migrate: plan for %s: %w", RedactURL(pgURL), err)
	}
	if err := pl.Err(); err != nil {
		return pl, nil, err
	}
	if err := ensureSchema(ctx, db); err != nil {
		return pl, nil, fmt.Errorf("migrate: %s: %w", RedactURL(pgURL), err)
	}
	p, err := newProvider(db, false)
	if err != nil {
		return pl, nil, err
	}
	log.Info("migrating database", zap.String("database", RedactURL(pgURL)), zap.String("direction", "up"), zap.Bool("adopt", pl.Adopt))
	var results []Result
	if pl.Adopt {
		rec, err := adopt(ctx, pgURL, db, conn, p, pl, opts, log)
		results = append(results, rec...)
		if err != nil {
			return pl, results, err
		}
	}
	res, err := p.Up(ctx)
	applied, err := gooseOutcome(res, err, pgURL, "up", results)
	logResults(log, applied[len(results):])
	if err != nil {
		return pl, applied, err
	}
	if len(applied) == 0 {
		log.Info("schema already current", zap.String("database", RedactURL(pgURL)))
	}
	return pl, applied, nil
}

// gooseOutcome converts goose's results and error: a *goose.PartialError
// becomes a *MigrationError listing before and the migrations applied.
func gooseOutcome(res []*goose.MigrationResult, err error, pgURL, direction string, before []Result) ([]Result, error) {
	applied := append(append([]Result(nil), before...), convert(res)...)
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		applied = append(append([]Result(nil), before...), convert(partial.Applied)...)
		f := partial.Failed
		return applied, &MigrationError{
			Version:   f.Source.Version,
			Name:      filepath.Base(f.Source.Path),
			Direction: f.Direction,
			Applied:   applied,
			Err:       partial.Err,
		}
	}
	if err != nil {
		return applied, fmt.Errorf("migrate: %s %s: %w", direction, RedactURL(pgURL), err)
	}
	return applied, nil
}

func newLocker() (lock.SessionLocker, error) {
	l, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(LockID),
		lock.WithLockTimeout(1, uint64(LockTimeout/time.Second)),
	)
	if err != nil {
		return nil, fmt.Errorf("migrate: session locker: %w", err)
	}
	return l, nil
}

// adopt runs the plan's steps on conn, then records (or applies) the
// migrations the adoption covers.
func adopt(ctx context.Context, pgURL string, db *sql.DB, conn *sql.Conn, p *goose.Provider, pl *Plan, opts AdoptOptions, log *zap.Logger) ([]Result, error) {
	log.Info("adopting the application's existing tables", zap.Int("steps", len(pl.Steps)), zap.Int64("through", pl.Through))
	for i, st := range pl.Steps {
		start := time.Now()
		if err := runStep(ctx, conn, st, opts.lockTimeout()); err != nil {
			return nil, &StepError{Index: i + 1, Step: st, Err: err}
		}
		log.Info("adoption step done", zap.Int("step", i+1), zap.String("summary", st.Summary), zap.Duration("duration", time.Since(start)))
	}
	if _, err := conn.ExecContext(ctx, "RESET lock_timeout"); err != nil {
		return nil, fmt.Errorf("migrate: reset lock_timeout: %w", err)
	}
	// The version table (with goose's version 0) exists after this.
	if _, err := p.HasPending(ctx); err != nil {
		return nil, fmt.Errorf("migrate: create %s: %w", VersionTable, err)
	}
	store, err := database.NewStore(database.DialectPostgres, VersionTable)
	if err != nil {
		return nil, fmt.Errorf("migrate: version store: %w", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+AdoptedTable+` (
		version_id bigint PRIMARY KEY,
		name       text NOT NULL,
		adopted_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("migrate: create %s: %w", AdoptedTable, err)
	}
	var out []Result
	for _, m := range pl.Migrations {
		if m.Version > pl.Through {
			break
		}
		start := time.Now()
		switch m.Action {
		case ActionApply:
			r, err := p.ApplyVersion(ctx, m.Version, true)
			var rs []*goose.MigrationResult
			if r != nil {
				rs = append(rs, r)
			}
			got, err := gooseOutcome(rs, err, pgURL, "up", out)
			if err != nil {
				var me *MigrationError
				if !errors.As(err, &me) {
					err = &MigrationError{Version: m.Version, Name: m.Name, Direction: "up", Applied: out, Err: err}
				}
				return out, err
			}
			out = got
		case ActionRecord:
			if err := record(ctx, db, store, m); err != nil {
				return out, &MigrationError{Version: m.Version, Name: m.Name, Direction: "record", Applied: out, Err: err}
			}
			out = append(out, Result{Version: m.Version, Name: m.Name, Direction: "up", Duration: time.Since(start), Adopted: true})
		}
		log.Info("migration adopted", zap.Int64("version", m.Version), zap.String("name", m.Name), zap.String("action", string(m.Action)))
	}
	return out, nil
}

// record writes m into goose's version table and AdoptedTable, in one
// transaction.
func record(ctx context.Context, db *sql.DB, store database.Store, m PlannedMigration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := store.Insert(ctx, tx, database.InsertRequest{Version: m.Version}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+AdoptedTable+` (version_id, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// checkDown refuses to roll back a migration an adoption recorded: its
// Down would drop or alter the application's own tables, which existed
// before the replicator. version is DownTo's target; -1 for Down (the
// latest applied migration).
func checkDown(ctx context.Context, db *sql.DB, version int64) error {
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", AdoptedTable).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: look up %s: %w", AdoptedTable, err)
	}
	if !exists {
		return nil
	}
	q := `SELECT coalesce(max(version_id), 0) FROM ` + AdoptedTable + ` WHERE version_id > $1`
	args := []any{version}
	if version < 0 {
		q = `SELECT coalesce(max(a.version_id), 0) FROM ` + AdoptedTable + ` a
			WHERE a.version_id = (SELECT max(version_id) FROM ` + VersionTable + ` WHERE is_applied)`
		args = nil
	}
	var adopted int64
	if err := db.QueryRowContext(ctx, q, args...).Scan(&adopted); err != nil {
		return fmt.Errorf("migrate: read %s: %w", AdoptedTable, err)
	}
	if adopted > 0 {
		return fmt.Errorf("%w: version %d was recorded when the application's existing tables were adopted; its Down would drop or alter them", ErrAdoptedDown, adopted)
	}
	return nil
}

func runStep(ctx context.Context, conn *sql.Conn, st Step, lockTimeout time.Duration) error {
	lt := "0"
	if st.Blocking {
		lt = fmt.Sprintf("%dms", lockTimeout.Milliseconds())
	}
	if _, err := conn.ExecContext(ctx, "SET lock_timeout = '"+lt+"'"); err != nil {
		return err
	}
	if !st.OneTx {
		for _, q := range st.SQL {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, q := range st.SQL {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}
