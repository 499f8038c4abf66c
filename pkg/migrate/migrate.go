package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/redact"
	"github.com/amanat/cdc/schema"
)

const (
	// VersionTable is where goose records applied migrations.
	VersionTable = "cdc.goose_db_version"

	// LockID is the key of the PostgreSQL advisory lock held while
	// migrating: an arbitrary constant, distinct from goose's default so
	// that another goose user of the same database neither blocks the
	// replicator nor is blocked by it.
	LockID int64 = 0x5f1e_c0de

	// LockTimeout bounds the wait for another replica's migration.
	LockTimeout = 10 * time.Minute
)

// Result is one migration applied or rolled back.
type Result struct {
	Version   int64
	Name      string // file name, e.g. "00001_cdc_bookkeeping.sql"
	Direction string // "up" or "down"
	Duration  time.Duration
	// Empty is true when the migration had no statements for this direction.
	Empty bool
	// Adopted is true when the migration was recorded as applied without
	// running: an adoption's steps made what it creates (see UpAdopting).
	Adopted bool
}

// MigrationStatus is the state of one migration shipped in this binary.
type MigrationStatus struct {
	Version   int64
	Name      string
	AppliedAt time.Time // zero when pending
	Pending   bool
}

// Up applies every pending migration, in order, each in its own transaction
// unless the file says NO TRANSACTION, and returns those it applied (none
// when the schema is current). On failure the error is a *MigrationError;
// migrations applied before the failing one stay applied. log may be nil.
//
// A database that already has the application's tables is adopted first
// (UpAdopting with default options: no mapping check, no widening), or
// refused with an *AdoptRefusedError.
func Up(ctx context.Context, pgURL string, log *zap.Logger) ([]Result, error) {
	_, res, err := UpAdopting(ctx, pgURL, log, AdoptOptions{})
	return res, err
}

// Status lists every migration this binary ships with whether and when it
// was applied, ordered by version. It takes no lock and changes nothing: on
// a database never migrated, everything is pending.
func Status(ctx context.Context, pgURL string) ([]MigrationStatus, error) {
	db, err := open(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	p, err := newProvider(db, false)
	if err != nil {
		return nil, err
	}
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", VersionTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrate: status of %s: look up %s: %w", RedactURL(pgURL), VersionTable, err)
	}
	if !exists {
		var out []MigrationStatus
		for _, s := range p.ListSources() {
			out = append(out, MigrationStatus{Version: s.Version, Name: filepath.Base(s.Path), Pending: true})
		}
		return out, nil
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: status of %s: %w", RedactURL(pgURL), err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		ms := MigrationStatus{Version: s.Source.Version, Name: filepath.Base(s.Source.Path), Pending: s.State == goose.StatePending}
		if !ms.Pending {
			ms.AppliedAt = s.AppliedAt
		}
		out = append(out, ms)
	}
	return out, nil
}

// RequireCurrent returns nil when the database has exactly the migrations
// this binary ships applied, ErrPending (wrapped, naming the first missing
// version) when some are missing, and ErrUnknownVersion when the database
// was migrated by a newer binary. Components that must not run against a
// schema they were not built for call it at start-up.
func RequireCurrent(ctx context.Context, pgURL string) error {
	st, err := Status(ctx, pgURL)
	if err != nil {
		return err
	}
	var latest int64
	for _, s := range st {
		if s.Pending {
			return fmt.Errorf("%w: migration %s (version %d) not applied; run `cdc migrate` with this binary", ErrPending, s.Name, s.Version)
		}
		latest = max(latest, s.Version)
	}
	db, err := open(ctx, pgURL)
	if err != nil {
		return err
	}
	defer db.Close()
	var dbMax int64
	if err := db.QueryRowContext(ctx, "SELECT coalesce(max(version_id), 0) FROM "+VersionTable+" WHERE is_applied").Scan(&dbMax); err != nil {
		return fmt.Errorf("migrate: read %s: %w", VersionTable, err)
	}
	if dbMax > latest {
		return fmt.Errorf("%w: database is at version %d, this binary knows up to %d; run the binary that migrated it (or a newer one)", ErrUnknownVersion, dbMax, latest)
	}
	return nil
}

func run(ctx context.Context, pgURL string, log *zap.Logger, direction string, downTo int64, fn func(*goose.Provider) ([]*goose.MigrationResult, error)) ([]Result, error) {
	if log == nil {
		log = zap.NewNop()
	}
	db, err := open(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if direction == "down" {
		if err := checkDown(ctx, db, downTo); err != nil {
			return nil, err
		}
	}
	if err := ensureSchema(ctx, db); err != nil {
		return nil, fmt.Errorf("migrate: %s: %w", RedactURL(pgURL), err)
	}
	p, err := newProvider(db, true)
	if err != nil {
		return nil, err
	}
	log.Info("migrating database", zap.String("database", RedactURL(pgURL)), zap.String("direction", direction))
	res, err := fn(p)
	applied, err := gooseOutcome(res, err, pgURL, direction, nil)
	var me *MigrationError
	if err != nil && !errors.As(err, &me) {
		return applied, err
	}
	// What ran is logged, also when a migration failed partway.
	logResults(log, applied)
	if err != nil {
		return applied, err
	}
	if len(applied) == 0 {
		log.Info("schema already current", zap.String("database", RedactURL(pgURL)))
	}
	return applied, nil
}

func logResults(log *zap.Logger, rs []Result) {
	for _, r := range rs {
		log.Info("migration done",
			zap.Int64("version", r.Version),
			zap.String("name", r.Name),
			zap.String("direction", r.Direction),
			zap.Duration("duration", r.Duration),
			zap.Bool("empty", r.Empty))
	}
}

func convert(in []*goose.MigrationResult) []Result {
	out := make([]Result, 0, len(in))
	for _, r := range in {
		if r == nil || r.Source == nil {
			continue
		}
		out = append(out, Result{
			Version:   r.Source.Version,
			Name:      filepath.Base(r.Source.Path),
			Direction: r.Direction,
			Duration:  r.Duration,
			Empty:     r.Empty,
		})
	}
	return out
}

// open connects through the pgx database/sql driver with search_path pinned
// to public (see the package documentation).
func open(ctx context.Context, pgURL string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(pgURL)
	if err != nil {
		// pgx's own redaction is best effort and its cause may quote the
		// URL: scrub the whole message of pgURL's credentials.
		return nil, redact.Error(fmt.Errorf("migrate: parse database URL %s: %w", RedactURL(pgURL), err), pgURL)
	}
	cfg.RuntimeParams["search_path"] = "public"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "cdc-migrate"
	}
	db := stdlib.OpenDB(*cfg)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, redact.Error(fmt.Errorf("migrate: connect to %s: %w", RedactURL(pgURL), err), pgURL)
	}
	return db, nil
}

// ensureSchema creates schema cdc, which must exist before goose creates its
// version table there. When it already exists nothing is executed here; the
// migration role still needs CREATE on the database, because migration
// 00001's own CREATE SCHEMA IF NOT EXISTS is checked for the privilege
// before the schema's existence (deploy/postgres/roles.sql grants it to
// cdc_owner).
//
// Deliberately no lock and no transaction around it: a replica waiting for a
// lock inside a transaction would hold a snapshot, and the CREATE INDEX
// CONCURRENTLY of another replica's migration waits for every older snapshot
// in the database, a deadlock. Two replicas racing to create the schema is
// handled instead: the loser's duplicate error means "it exists".
func ensureSchema(ctx context.Context, db *sql.DB) error {
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cdc')").Scan(&exists); err != nil {
		return fmt.Errorf("look up schema cdc: %w", err)
	}
	if exists {
		return nil
	}
	_, err := db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS cdc")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P06") {
		// unique_violation or duplicate_schema: created concurrently by
		// another replica.
		return nil
	}
	if err != nil {
		return fmt.Errorf("create schema cdc: %w", err)
	}
	return nil
}

func newProvider(db *sql.DB, locked bool) (*goose.Provider, error) {
	fsys, err := migrationsFS()
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{
		goose.WithTableName(VersionTable),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}
	if locked {
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(LockID),
			lock.WithLockTimeout(1, uint64(LockTimeout/time.Second)),
		)
		if err != nil {
			return nil, fmt.Errorf("migrate: session locker: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrate: load embedded migrations: %w", err)
	}
	return p, nil
}

func migrationsFS() (fs.FS, error) {
	fsys, err := fs.Sub(schema.Migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: embedded migrations: %w", err)
	}
	return fsys, nil
}
