package pgtest_test

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/amanat/cdc/pkg/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, conn *pgx.Conn, sql string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestSharedClusterServesQueries(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	if !strings.HasPrefix(url, "postgres://") || !strings.Contains(url, "sslmode=disable") {
		t.Fatalf("unexpected database URL %q", url)
	}
	conn := connect(t, url)
	var db string
	if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(url, "/"+db+"?") {
		t.Fatalf("URL %q does not name database %q", url, db)
	}
	if got := count(t, conn, "SELECT current_setting('max_connections')::int"); !pgtest.Shared().External() && got != 200 {
		t.Fatalf("max_connections = %d, want 200", got)
	}
}

func TestDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	a := connect(t, pgtest.NewDatabase(t))
	b := connect(t, pgtest.NewDatabase(t))
	exec(t, a, "CREATE TABLE only_in_a (id int)")
	exec(t, a, "INSERT INTO only_in_a VALUES (1)")
	if n := count(t, a, "SELECT count(*) FROM only_in_a"); n != 1 {
		t.Fatalf("rows in a = %d", n)
	}
	if n := count(t, b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"); n != 0 {
		t.Fatal("table created in database a is visible in database b")
	}
}

// TestDatabaseDroppedAtCleanup checks that a database is gone after its
// test, even when the test left a connection open.
func TestDatabaseDroppedAtCleanup(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("inner", func(t *testing.T) {
		url := pgtest.NewDatabase(t)
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		// Deliberately left open: the cleanup must terminate it. The
		// connection is closed below only to release client resources.
		t.Cleanup(func() { conn.Close(context.Background()) })
		if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	admin := connect(t, pgtest.Shared().AdminURL())
	var n int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

// TestStopStartAgainKeepsData simulates an outage on a cluster of its own:
// data committed before the stop (and before a crash) is there after the
// restart, on the same URL, and connections fail while it is down.
func TestStopStartAgainKeepsData(t *testing.T) {
	c, err := pgtest.Start(pgtest.Options{Managed: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	url := c.NewDatabase(t)
	conn := connect(t, url)
	exec(t, conn, "CREATE TABLE kept (v text)")
	exec(t, conn, "INSERT INTO kept VALUES ('before stop')")

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop should do nothing: %v", err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("old connection still works while the server is stopped")
	}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	_, err = pgx.Connect(short, url)
	cancelShort()
	if err == nil {
		t.Fatal("connected while the server is stopped")
	}
	time.Sleep(500 * time.Millisecond) // a short outage
	if err := c.StartAgain(ctx); err != nil {
		t.Fatalf("StartAgain: %v", err)
	}
	if err := c.StartAgain(ctx); err == nil {
		t.Fatal("StartAgain on a running server should fail")
	}

	conn2 := connect(t, url)
	if n := count(t, conn2, "SELECT count(*) FROM kept WHERE v = 'before stop'"); n != 1 {
		t.Fatalf("rows after restart = %d, want 1", n)
	}

	// A crash (immediate shutdown) loses nothing that was committed.
	exec(t, conn2, "INSERT INTO kept VALUES ('before crash')")
	if err := c.Crash(ctx); err != nil {
		t.Fatalf("Crash: %v", err)
	}
	if err := c.StartAgain(ctx); err != nil {
		t.Fatalf("StartAgain after crash: %v", err)
	}
	conn3 := connect(t, url)
	if n := count(t, conn3, "SELECT count(*) FROM kept"); n != 2 {
		t.Fatalf("rows after crash recovery = %d, want 2", n)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	c, err := pgtest.Start(pgtest.Options{Managed: true, Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := pgtest.TempDir(c)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("temp dir missing while running: %v", err)
	}
	conn := connect(t, c.AdminURL())
	var fsync string
	if err := conn.QueryRow(t.Context(), "SHOW fsync").Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	if fsync != "on" {
		t.Fatalf("fsync = %s with Options.Fsync, want on", fsync)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir %s still there after Close (stat: %v)", dir, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := pgx.Connect(ctx, c.AdminURL()); err == nil {
		t.Fatal("server still accepts connections after Close")
	}
	if err := c.StartAgain(t.Context()); !errors.Is(err, pgtest.ErrClosed) {
		t.Fatalf("StartAgain after Close = %v, want ErrClosed", err)
	}
}

// TestExternalServer runs the external mode against the shared cluster as if
// it had been given in CDC_TEST_PG_URL.
func TestExternalServer(t *testing.T) {
	t.Setenv(pgtest.EnvURL, pgtest.Shared().AdminURL())
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.External() {
		t.Fatal("cluster from CDC_TEST_PG_URL is not external")
	}
	conn := connect(t, c.NewDatabase(t))
	exec(t, conn, "CREATE TABLE x (id int)")
	for name, op := range map[string]func(context.Context) error{
		"Stop": c.Stop, "StartAgain": c.StartAgain, "Crash": c.Crash,
	} {
		if err := op(t.Context()); !errors.Is(err, pgtest.ErrExternal) {
			t.Errorf("%s on external = %v, want ErrExternal", name, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing the external cluster must not touch the server.
	admin := connect(t, pgtest.Shared().AdminURL())
	exec(t, admin, "SELECT 1")
}

func TestExternalServerUnreachableFails(t *testing.T) {
	t.Setenv(pgtest.EnvURL, "postgres://u:s3cret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2")
	_, err := pgtest.Start(pgtest.Options{StartTimeout: 5 * time.Second})
	if err == nil {
		t.Fatal("Start with an unreachable CDC_TEST_PG_URL succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestMissingBinariesSaysHowToInstall(t *testing.T) {
	_, err := pgtest.Start(pgtest.Options{Managed: true, BinDir: t.TempDir()})
	if !errors.Is(err, pgtest.ErrNoBinaries) {
		t.Fatalf("Start with an empty BinDir = %v, want ErrNoBinaries", err)
	}
}

// TestStaleDirectoriesSwept: a directory left by a dead test process is
// removed by the next Start; one whose owner lives is kept.
func TestStaleDirectoriesSwept(t *testing.T) {
	base := t.TempDir()
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil { // reachable by the unprivileged server user
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", base)

	dead := osexec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(base, "pgtest-stale")
	live := filepath.Join(base, "pgtest-live")
	for dir, pid := range map[string]int{stale: dead.Process.Pid, live: os.Getpid()} {
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	c, err := pgtest.Start(pgtest.Options{Managed: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory of a dead owner not swept (stat: %v)", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("directory of a live owner removed: %v", err)
	}
	if !strings.HasPrefix(pgtest.TempDir(c), base) {
		t.Errorf("cluster not created under TMPDIR %s: %s", base, pgtest.TempDir(c))
	}
}

// TestUnreachableTempDirExplained: running as root, a TMPDIR the server user
// cannot enter fails Start with a message that names the fix.
func TestUnreachableTempDirExplained(t *testing.T) {
	base := t.TempDir() // 0700, owned by the test user
	t.Setenv("TMPDIR", base)
	c, err := pgtest.Start(pgtest.Options{Managed: true})
	if os.Geteuid() != 0 {
		// Unprivileged: the server runs as the test user, who can enter it.
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		return
	}
	if err == nil {
		c.Close()
		t.Fatal("Start as root under a TMPDIR user nobody cannot enter succeeded")
	}
	if !strings.Contains(err.Error(), "TMPDIR") {
		t.Fatalf("error does not name the fix: %v", err)
	}
}
