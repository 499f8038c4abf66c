package migrate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctxT(t), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func latest(t *testing.T) int64 {
	t.Helper()
	v, err := migrate.Latest()
	if err != nil {
		t.Fatal(err)
	}
	if v < 13 {
		t.Fatalf("Latest() = %d, expected at least the 13 shipped migrations", v)
	}
	return v
}

// migrated returns the URL of a fresh database with every migration applied.
func migrated(t *testing.T) string {
	t.Helper()
	url := pgtest.NewDatabase(t)
	if _, err := migrate.Up(ctxT(t), url, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("Up: %v", err)
	}
	return url
}

func TestUpFromZero(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	want := latest(t)

	// Status on a database never migrated: all pending, nothing created.
	st, err := migrate.Status(ctx, url)
	if err != nil {
		t.Fatalf("Status before Up: %v", err)
	}
	if int64(len(st)) != want {
		t.Fatalf("Status lists %d migrations, want %d", len(st), want)
	}
	for _, s := range st {
		if !s.Pending || !s.AppliedAt.IsZero() {
			t.Fatalf("before Up, %+v is not pending", s)
		}
	}
	conn := connect(t, url)
	var cdcExists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cdc')").Scan(&cdcExists); err != nil {
		t.Fatal(err)
	}
	if cdcExists {
		t.Fatal("Status created schema cdc; it must not write anything")
	}
	if err := migrate.RequireCurrent(ctx, url); !errors.Is(err, migrate.ErrPending) {
		t.Fatalf("RequireCurrent before Up = %v, want ErrPending", err)
	}

	start := time.Now()
	applied, err := migrate.Up(ctx, url, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("applied %d migrations in %s", len(applied), time.Since(start))
	if int64(len(applied)) != want {
		t.Fatalf("Up applied %d migrations, want %d", len(applied), want)
	}
	for i, r := range applied {
		if r.Version != int64(i+1) || r.Direction != "up" || !strings.HasSuffix(r.Name, ".sql") {
			t.Fatalf("result %d = %+v", i, r)
		}
	}

	st, err = migrate.Status(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Pending || s.AppliedAt.IsZero() {
			t.Fatalf("after Up, %+v is not applied", s)
		}
	}
	if err := migrate.RequireCurrent(ctx, url); err != nil {
		t.Fatalf("RequireCurrent after Up: %v", err)
	}

	// The version table is the replicator's, not the application's.
	var where string
	if err := conn.QueryRow(ctx, "SELECT to_regclass('cdc.goose_db_version')::text").Scan(&where); err != nil || where == "" {
		t.Fatalf("cdc.goose_db_version missing (%v)", err)
	}
	var inPublic bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('public.goose_db_version') IS NOT NULL").Scan(&inPublic); err != nil {
		t.Fatal(err)
	}
	if inPublic {
		t.Fatal("a goose version table was created in public")
	}

	// Up again: nothing to do.
	again, err := migrate.Up(ctx, url, zap.NewNop())
	if err != nil {
		t.Fatalf("second Up: %v", err)
	}
	if len(again) != 0 {
		t.Fatalf("second Up applied %v", again)
	}
}

func TestConcurrentUpDoesNotCollide(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	const replicas = 3
	var wg sync.WaitGroup
	results := make([][]migrate.Result, replicas)
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = migrate.Up(ctx, url, zap.NewNop())
		}()
	}
	wg.Wait()
	total := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		total += len(results[i])
	}
	if want := latest(t); int64(total) != want {
		t.Fatalf("replicas applied %d migrations in total, want each of the %d exactly once", total, want)
	}
	conn := connect(t, url)
	var dup int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT version_id FROM cdc.goose_db_version
		GROUP BY version_id HAVING count(*) > 1) d`).Scan(&dup); err != nil {
		t.Fatal(err)
	}
	if dup != 0 {
		t.Fatalf("%d versions recorded more than once", dup)
	}
}

// TestDownAndUpAgain runs every Down section and then every Up again.
func TestDownAndUpAgain(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := migrated(t)
	conn := connect(t, url)
	// A mapping written by the app survives a full rollback: id_map may
	// predate the replicator and is never dropped by it.
	if _, err := conn.Exec(ctx, `INSERT INTO id_map (collection, legacy_object_id, new_id)
		VALUES ('users', '65f000000000000000000001', gen_random_uuid())`); err != nil {
		t.Fatal(err)
	}

	down, err := migrate.DownTo(ctx, url, 0, zap.NewNop())
	if err != nil {
		t.Fatalf("DownTo(0): %v", err)
	}
	if int64(len(down)) != latest(t) {
		t.Fatalf("DownTo(0) rolled back %d migrations", len(down))
	}
	var tables []string
	rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname IN ('public', 'cdc') ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tables, ","); got != "goose_db_version,id_map,pg_dualwrite_gaps" {
		t.Fatalf("tables left after DownTo(0): %s", got)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM id_map").Scan(&n); err != nil || n != 1 {
		t.Fatalf("id_map rows after DownTo(0) = %d (%v), want 1", n, err)
	}

	if _, err := migrate.Up(ctx, url, zap.NewNop()); err != nil {
		t.Fatalf("Up after DownTo(0): %v", err)
	}
	if err := migrate.RequireCurrent(ctx, url); err != nil {
		t.Fatal(err)
	}

	one, err := migrate.Down(ctx, url, zap.NewNop())
	if err != nil || len(one) != 1 || one[0].Version != latest(t) {
		t.Fatalf("Down = %v, %v", one, err)
	}
	if err := migrate.RequireCurrent(ctx, url); !errors.Is(err, migrate.ErrPending) {
		t.Fatalf("RequireCurrent after Down = %v, want ErrPending", err)
	}
}

func TestUpToStopsAtVersion(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	res, err := migrate.UpTo(ctx, url, 2, zap.NewNop())
	if err != nil || len(res) != 2 {
		t.Fatalf("UpTo(2) = %v, %v", res, err)
	}
	st, err := migrate.Status(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if (s.Version <= 2) == s.Pending {
			t.Fatalf("after UpTo(2): %+v", s)
		}
	}
}

// TestIDMapUpgradedInPlace: an id_map created by the app's dual-write, with
// no primary key, no unique constraint and new_id as text, is upgraded
// without losing a mapping.
func TestIDMapUpgradedInPlace(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `
		CREATE TABLE id_map (collection text, legacy_object_id text, new_id text);
		INSERT INTO id_map VALUES
			('users', '65f000000000000000000001', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001'),
			('users', '65f000000000000000000002', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0002'),
			('payments', '65f000000000000000000001', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0003');
		-- An index an operator built CONCURRENTLY ahead of time is adopted.
		CREATE UNIQUE INDEX id_map_prebuilt ON id_map (collection, legacy_object_id);`); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Up(ctx, url, zap.NewNop()); err != nil {
		t.Fatalf("Up over an app-created id_map: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM id_map WHERE created_at IS NOT NULL").Scan(&n); err != nil || n != 3 {
		t.Fatalf("id_map rows after upgrade = %d (%v), want 3", n, err)
	}
	var defs []string
	rows, err := conn.Query(ctx, `SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'id_map'::regclass ORDER BY conname`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := "id_map_new_id_uq UNIQUE (new_id)|id_map_pkey PRIMARY KEY (collection, legacy_object_id)"
	if got := strings.Join(defs, "|"); got != want {
		t.Fatalf("id_map constraints = %s, want %s", got, want)
	}
	var idx int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE tablename = 'id_map'").Scan(&idx); err != nil || idx != 2 {
		t.Fatalf("id_map has %d indexes (%v), want 2: the pre-built one adopted, not duplicated", idx, err)
	}
}

func TestIDMapDuplicatesFailLoudly(t *testing.T) {
	for name, rows := range map[string]string{
		"duplicate legacy id": `('users', 'a', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001'),
		                        ('users', 'a', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0002')`,
		"shared new_id": `('users', 'a', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001'),
		                  ('users', 'b', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001')`,
		"null new_id": `('users', 'a', NULL)`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			url := pgtest.NewDatabase(t)
			conn := connect(t, url)
			if _, err := conn.Exec(ctx, `CREATE TABLE id_map (collection text, legacy_object_id text, new_id uuid);
				INSERT INTO id_map VALUES `+rows); err != nil {
				t.Fatal(err)
			}
			applied, err := migrate.Up(ctx, url, zap.NewNop())
			var me *migrate.MigrationError
			if !errors.As(err, &me) {
				t.Fatalf("Up = %v, want a *MigrationError", err)
			}
			if me.Version != 2 || len(applied) != 1 || applied[0].Version != 1 {
				t.Fatalf("failed at version %d after %v; want 00002 to fail right after 00001", me.Version, applied)
			}
			if !strings.Contains(err.Error(), "id_map upgrade refused") {
				t.Fatalf("error does not say why: %v", err)
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Hint == "" {
				t.Fatalf("no PostgreSQL error with a hint in %v", err)
			}
			t.Logf("refused as expected: %v (hint: %s)", err, pgErr.Hint)
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'id_map'::regclass").Scan(&n); err != nil || n != 0 {
				t.Fatalf("id_map constraints after a refused upgrade = %d (%v), want none: nothing may change", n, err)
			}
		})
	}
}

func TestErrorsDoNotLeakPassword(t *testing.T) {
	ctx := ctxT(t)
	url := "postgres://cdc:s3cret-pw@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"
	for name, fn := range map[string]func() error{
		"Up":     func() error { _, err := migrate.Up(ctx, url, nil); return err },
		"Status": func() error { _, err := migrate.Status(ctx, url); return err },
	} {
		err := fn()
		if err == nil {
			t.Fatalf("%s against a closed port succeeded", name)
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Fatalf("%s error leaks the password: %v", name, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                             "postgres://u@h/db",
		"postgres://u@h/db?password=secret":             "postgres://u@h/db?password=xxxxx",
		"postgres://u:secret@h:badport/db":              "postgres://u:xxxxx@h:badport/db",
		"host=h user=u password=secret dbname=d":        "host=h user=u password=xxxxx dbname=d",
	} {
		if got := migrate.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRequireCurrentRefusesNewerSchema: a database migrated by a newer
// binary is reported, not silently accepted.
func TestRequireCurrentRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := migrated(t)
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, "INSERT INTO cdc.goose_db_version (version_id, is_applied) VALUES ($1, true)", latest(t)+1); err != nil {
		t.Fatal(err)
	}
	if err := migrate.RequireCurrent(ctx, url); !errors.Is(err, migrate.ErrUnknownVersion) {
		t.Fatalf("RequireCurrent = %v, want ErrUnknownVersion", err)
	}
}
