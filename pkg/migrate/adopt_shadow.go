package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/pressly/goose/v3"
)

const (
	// shadowSchema and shadowCDC are where the shadow run creates what the
	// migrations create in public and in cdc. They exist only inside the
	// shadow's transaction, which is always rolled back.
	shadowSchema = "cdc_adopt_shadow"
	shadowCDC    = "cdc_adopt_shadow_cdc"
)

// source is one embedded migration file.
type source struct {
	version int64
	name    string // file name
	up      string // the Up section
	noTx    bool   // -- +goose NO TRANSACTION
}

var (
	upMarker   = regexp.MustCompile(`(?m)^--\s*\+goose\s+Up\b.*$`)
	downMarker = regexp.MustCompile(`(?m)^--\s*\+goose\s+Down\b.*$`)
	noTxMarker = regexp.MustCompile(`(?m)^--\s*\+goose\s+NO\s+TRANSACTION\b`)
	// The migrations name replicator objects cdc.<name> and create the
	// schema with CREATE SCHEMA [IF NOT EXISTS] cdc (package schema's
	// convention); the shadow run points both at shadowCDC.
	cdcQualified = regexp.MustCompile(`(?i)\bcdc\.`)
	cdcSchema    = regexp.MustCompile(`(?i)(\bSCHEMA\s+(?:IF\s+NOT\s+EXISTS\s+)?)cdc\b`)
	concurrently = regexp.MustCompile(`(?i)\s+CONCURRENTLY\b`)
)

// sources reads every embedded migration, ordered by version.
func sources() ([]source, error) {
	fsys, err := migrationsFS()
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrate: embedded migrations: %w", err)
	}
	out := make([]source, 0, len(names))
	for _, name := range names {
		v, err := goose.NumericComponent(name)
		if err != nil {
			return nil, fmt.Errorf("migrate: embedded migration %s: %w", name, err)
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("migrate: embedded migration %s: %w", name, err)
		}
		text := string(data)
		up := upMarker.FindStringIndex(text)
		if up == nil {
			return nil, fmt.Errorf("migrate: embedded migration %s has no -- +goose Up section", name)
		}
		body := text[up[1]:]
		if down := downMarker.FindStringIndex(body); down != nil {
			body = body[:down[0]]
		}
		out = append(out, source{version: v, name: path.Base(name), up: body, noTx: noTxMarker.MatchString(text)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// shadowSQL is a migration's Up section as the shadow runs it: cdc
// pointed at shadowCDC, and CONCURRENTLY dropped (the shadow is one
// transaction; its tables are empty, so nothing is lost).
func shadowSQL(s source) string {
	q := cdcQualified.ReplaceAllString(s.up, shadowCDC+".")
	q = cdcSchema.ReplaceAllString(q, "${1}"+shadowCDC)
	return concurrently.ReplaceAllString(q, "")
}

// shadowStep is what one migration does, learned by running it in the
// shadow.
type shadowStep struct {
	source
	// after is the application schema as this migration leaves it.
	after *catalog
	// appChanged and cdcChanged say whether it changes the application's
	// schema (DDL in public) and the replicator's (DDL in cdc).
	appChanged bool
	cdcChanged bool
	// rerunnable is true when running it a second time succeeds: it was
	// written to upgrade objects that already exist (CREATE ... IF NOT
	// EXISTS, the in-place id_map upgrade, DROP ... IF EXISTS then
	// CREATE), so it can run against the application's existing tables.
	rerunnable bool
}

// shadow runs every migration, in order, in a transaction on conn that is
// always rolled back, with the application's schema in shadowSchema and
// the replicator's in shadowCDC, and reads back what each one created.
// It writes nothing that outlives the call; it needs the CREATE privilege
// on the database (as migrating does).
//
// search_path is shadowSchema followed by the schemas of installed
// extensions (an operator class such as pg_trgm's gin_trgm_ops must
// resolve), so every name a migration leaves unqualified resolves to the
// shadow's own objects: the migrations create what they use before they
// use it, exactly as on a fresh database.
func shadow(ctx context.Context, conn *sql.Conn) (_ []shadowStep, err error) {
	srcs, err := sources()
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("shadow run: begin: %w", err)
	}
	defer func() {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) && err == nil {
			err = fmt.Errorf("shadow run: rollback: %w", rerr)
		}
	}()
	if err := prepareShadow(ctx, tx); err != nil {
		return nil, err
	}
	prevApp, prevCDC, err := readShadow(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("shadow run: %w", err)
	}
	out := make([]shadowStep, 0, len(srcs))
	for _, s := range srcs {
		step, repl, err := shadowMigration(ctx, tx, s, prevApp, prevCDC)
		if err != nil {
			return nil, err
		}
		out = append(out, step)
		prevApp, prevCDC = step.after, repl
	}
	return out, nil
}

// prepareShadow creates the shadow's two schemas in tx and points
// search_path at shadowSchema and the extensions' schemas (see shadow).
func prepareShadow(ctx context.Context, tx *sql.Tx) error {
	extSchemas, err := extensionSchemas(ctx, tx)
	if err != nil {
		return err
	}
	setup := []string{
		// Never wait long behind a live lock: the shadow touches only its
		// own objects, so a wait means something unexpected.
		"SET LOCAL lock_timeout = '5s'",
		"CREATE SCHEMA " + shadowSchema,
		"CREATE SCHEMA " + shadowCDC,
		"SET LOCAL search_path = " + strings.Join(append([]string{shadowSchema}, extSchemas...), ", "),
	}
	for _, q := range setup {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("shadow run: %s: %w", q, err)
		}
	}
	return nil
}

// extensionSchemas lists, quoted, the schemas that hold installed
// extensions, so that the shadow's search_path resolves their operator
// classes and functions.
func extensionSchemas(ctx context.Context, tx *sql.Tx) ([]string, error) {
	var extSchemas []string
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT quote_ident(n.nspname) FROM pg_extension e
		JOIN pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname NOT IN ('pg_catalog', $1, $2) ORDER BY 1`, shadowSchema, shadowCDC)
	if err != nil {
		return nil, fmt.Errorf("shadow run: list extension schemas: %w", err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return nil, fmt.Errorf("shadow run: list extension schemas: %w", err)
		}
		extSchemas = append(extSchemas, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("shadow run: list extension schemas: %w", err)
	}
	return extSchemas, nil
}

// readShadow reads the shadow's application schema, named as in public,
// and a fingerprint of its replicator schema: of cdc only whether it
// changed matters.
func readShadow(ctx context.Context, tx *sql.Tx) (*catalog, string, error) {
	app, err := readCatalog(ctx, tx, shadowSchema, map[string]string{shadowSchema + ".": "", shadowCDC + ".": "cdc."})
	if err != nil {
		return nil, "", err
	}
	repl, err := readCatalog(ctx, tx, shadowCDC, map[string]string{shadowCDC + ".": "cdc.", shadowSchema + ".": ""})
	if err != nil {
		return nil, "", err
	}
	return app, repl.fingerprint(), nil
}

// shadowMigration runs one migration in the shadow and compares the
// schemas it leaves with prevApp and prevCDC, what the migrations before
// it left. It then runs the migration a second time inside a savepoint
// that is always rolled back, to learn whether it is rerunnable without
// keeping what the second run did. It returns the step and the new cdc
// fingerprint.
func shadowMigration(ctx context.Context, tx *sql.Tx, s source, prevApp *catalog, prevCDC string) (shadowStep, string, error) {
	q := shadowSQL(s)
	if _, err := tx.ExecContext(ctx, q); err != nil {
		return shadowStep{}, "", &MigrationError{Version: s.version, Name: s.name, Direction: "shadow", Err: err}
	}
	app, repl, err := readShadow(ctx, tx)
	if err != nil {
		return shadowStep{}, "", fmt.Errorf("shadow run of %s: %w", s.name, err)
	}
	step := shadowStep{source: s, after: app, appChanged: app.fingerprint() != prevApp.fingerprint(), cdcChanged: repl != prevCDC}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT cdc_adopt_rerun"); err != nil {
		return shadowStep{}, "", fmt.Errorf("shadow run of %s: %w", s.name, err)
	}
	_, rerr := tx.ExecContext(ctx, q)
	step.rerunnable = rerr == nil
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT cdc_adopt_rerun"); err != nil {
		return shadowStep{}, "", fmt.Errorf("shadow run of %s: %w", s.name, err)
	}
	return step, repl, nil
}
