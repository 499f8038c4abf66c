package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"go.uber.org/zap"
)

// Fingerprints returns the application schema the shadow run of every
// migration produces and the one the database at pgURL has, as text.
func Fingerprints(ctx context.Context, pgURL string) (shadowed, live string, err error) {
	db, err := open(ctx, pgURL)
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	runs, err := shadow(ctx, conn)
	if err != nil {
		return "", "", err
	}
	lc, err := readCatalog(ctx, conn, "public", map[string]string{"public.": ""})
	if err != nil {
		return "", "", err
	}
	return runs[len(runs)-1].after.fingerprint(), lc.fingerprint(), nil
}

// Drift lists what an adoption would still change or refuse to bring the
// database at pgURL to the schema of every migration: nothing, for a
// database the migrations (or an adoption) made.
func Drift(ctx context.Context, pgURL string, opts AdoptOptions) ([]string, error) {
	db, err := open(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	runs, err := shadow(ctx, conn)
	if err != nil {
		return nil, err
	}
	live, err := readCatalog(ctx, conn, "public", map[string]string{"public.": ""})
	if err != nil {
		return nil, err
	}
	final := runs[len(runs)-1].after
	d := &differ{want: final, final: final, live: live, widen: opts.Widen, role: "test", needs: map[string]map[string]bool{}}
	d.run()
	var out []string
	for _, s := range d.ordered() {
		out = append(out, "step: "+s.Summary)
	}
	for _, df := range d.diffs {
		out = append(out, fmt.Sprintf("difference: %s", df))
	}
	return out, nil
}

// The stepping functions below exist for the tests (a database walked
// to a version, rolled back, the newest version shipped); the replicator
// and the CLI only move forward with Up/UpAdopting.

// UpTo applies pending migrations up to and including version. It does
// not adopt existing tables (Up does): it is for tests and for operators
// stepping through a fresh database.
func UpTo(ctx context.Context, pgURL string, version int64, log *zap.Logger) ([]Result, error) {
	return run(ctx, pgURL, log, "up", 0, func(p *goose.Provider) ([]*goose.MigrationResult, error) {
		return p.UpTo(ctx, version)
	})
}

// Down rolls back the most recently applied migration. It is meant for tests
// and for an operator undoing a release; the replicator never calls it.
//
// A migration an adoption recorded is never rolled back (ErrAdoptedDown):
// its Down would drop the application's own tables.
func Down(ctx context.Context, pgURL string, log *zap.Logger) ([]Result, error) {
	return run(ctx, pgURL, log, "down", -1, func(p *goose.Provider) ([]*goose.MigrationResult, error) {
		r, err := p.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			return nil, nil
		}
		if r == nil {
			return nil, err
		}
		return []*goose.MigrationResult{r}, err
	})
}

// DownTo rolls back applied migrations newer than version (0: all of them).
// Like Down, for tests and operators, and like Down it refuses
// (ErrAdoptedDown) to roll back a migration an adoption recorded.
func DownTo(ctx context.Context, pgURL string, version int64, log *zap.Logger) ([]Result, error) {
	return run(ctx, pgURL, log, "down", version, func(p *goose.Provider) ([]*goose.MigrationResult, error) {
		return p.DownTo(ctx, version)
	})
}

// Latest returns the highest migration version this binary ships.
func Latest() (int64, error) {
	fsys, err := migrationsFS()
	if err != nil {
		return 0, err
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return 0, fmt.Errorf("migrate: embedded migrations: %w", err)
	}
	var latest int64
	for _, name := range names {
		v, err := goose.NumericComponent(name)
		if err != nil {
			return 0, fmt.Errorf("migrate: embedded migration %s: %w", name, err)
		}
		latest = max(latest, v)
	}
	return latest, nil
}

// run runs fn under goose's lock; downTo is the target of a down
// direction (-1: the latest migration), checked by checkDown.
