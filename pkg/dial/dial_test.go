package dial_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amanat/cdc/pkg/dial"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
}

// closedPort is a loopback port nothing listens on (it did a moment ago).
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// checkFailure fails t unless err is an *Error of stage whose message
// does not quote the password s3cret.
func checkFailure(t *testing.T, err error, stage dial.Stage) {
	t.Helper()
	var de *dial.Error
	switch {
	case !errors.As(err, &de):
		t.Fatalf("error %v (%T), want a *dial.Error", err, err)
	case de.Stage != stage || dial.StageOf(err) != stage:
		t.Fatalf("stage %v (StageOf %v), want %v: %v", de.Stage, dial.StageOf(err), stage, err)
	case strings.Contains(err.Error(), "s3cret"):
		t.Fatalf("the message quotes the password: %v", err)
	case de.Err == nil:
		t.Fatal("no driver error")
	}
}

// TestMongo: a usable URI reaches the server; an unusable one fails at
// StageParse, an unreachable server at StagePing within the driver
// timeout; neither message quotes the password.
func TestMongo(t *testing.T) {
	ctx := t.Context()
	srv := mongotest.Start(t)
	client, err := dial.Mongo(ctx, srv.URI(), dial.MongoOptions{AppName: "cdc-test", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("reachable server: %v", err)
	}
	if err := client.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		uri   string
		stage dial.Stage
	}{
		{"unusable URI", "mongodb://u:s3cret@127.0.0.1:27017/?connectTimeoutMS=soon", dial.StageParse},
		{"nothing listens", "mongodb://u:s3cret@127.0.0.1:" + closedPort(t) + "/?directConnection=true", dial.StagePing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The ping's own bound is long: a failure within it shows that
			// DriverTimeout bounded server selection.
			start := time.Now()
			_, err := dial.Mongo(ctx, tc.uri, dial.MongoOptions{AppName: "cdc-test", Timeout: 20 * time.Second, DriverTimeout: 200 * time.Millisecond})
			checkFailure(t, err, tc.stage)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %s: DriverTimeout did not bound server selection", d)
			}
		})
	}
}

// TestPostgres: the pool has the options' settings (application name,
// size, connect timeout, read-only transactions); an unusable URL fails at
// StageParse, an impossible pool at StageOpen, an unreachable server at
// StagePing: at once without RetryUnless or when it says the failure
// repeats, after retries until Timeout otherwise.
func TestPostgres(t *testing.T) {
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	pool, err := dial.Postgres(ctx, url, dial.PostgresOptions{AppName: "cdc-test", MaxConns: 3, Timeout: 10 * time.Second,
		ConnectTimeout: 7 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("reachable server: %v", err)
	}
	defer pool.Close()
	var app, readOnly string
	if err := pool.QueryRow(ctx, `SELECT current_setting('application_name'), current_setting('default_transaction_read_only')`).Scan(&app, &readOnly); err != nil {
		t.Fatal(err)
	}
	if pc := pool.Config(); app != "cdc-test" || readOnly != "on" || pc.MaxConns != 3 || pc.ConnConfig.ConnectTimeout != 7*time.Second {
		t.Fatalf("application_name %q read-only %q max conns %d connect timeout %s, want cdc-test on 3 7s",
			app, readOnly, pc.MaxConns, pc.ConnConfig.ConnectTimeout)
	}

	// Statements are planned with their arguments (unnamed statements),
	// never kept as named prepared statements whose generic plan Postgres
	// would reuse: the statement below leaves none behind.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var named int
	if _, err := conn.Exec(ctx, `SELECT $1::int + 1`, 41); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE $1::int = 1`, 1).Scan(&named); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	if named != 0 {
		t.Fatalf("%d named prepared statements on the connection, want none (each statement planned with its arguments)", named)
	}

	down := "postgres://u:s3cret@127.0.0.1:" + closedPort(t) + "/db?sslmode=disable"
	for _, tc := range []struct {
		name     string
		url      string
		o        dial.PostgresOptions
		stage    dial.Stage
		retried  bool // RetryUnless was asked more than once, until Timeout
		atOnce   bool // returned well within Timeout
		verdicts bool // RetryUnless is set; it answers permanent
	}{
		{"unusable URL", "postgres://u:s3cret@127.0.0.1:port/db", dial.PostgresOptions{MaxConns: 1, Timeout: 10 * time.Second}, dial.StageParse, false, true, false},
		{"no connections", url, dial.PostgresOptions{MaxConns: 0, Timeout: 10 * time.Second}, dial.StageOpen, false, true, false},
		{"nothing listens, one ping", down, dial.PostgresOptions{MaxConns: 1, Timeout: 10 * time.Second}, dial.StagePing, false, true, false},
		{"nothing listens, a permanent refusal", down, dial.PostgresOptions{MaxConns: 1, Timeout: 10 * time.Second}, dial.StagePing, false, true, true},
		{"nothing listens, retried", down, dial.PostgresOptions{MaxConns: 1, Timeout: 3 * dial.RetryInterval}, dial.StagePing, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked atomic.Int32
			o := tc.o
			if tc.retried || tc.verdicts {
				o.RetryUnless = func(error) bool { asked.Add(1); return tc.verdicts }
			}
			start := time.Now()
			pool, err := dial.Postgres(ctx, tc.url, o)
			d := time.Since(start)
			if pool != nil {
				pool.Close()
				t.Fatal("a pool came back with the error")
			}
			checkFailure(t, err, tc.stage)
			switch {
			case tc.atOnce && d > o.Timeout/2:
				t.Fatalf("took %s of the %s timeout: it retried", d, o.Timeout)
			case tc.retried && (asked.Load() < 2 || d < o.Timeout):
				t.Fatalf("asked %d times in %s, want retries until the %s timeout", asked.Load(), d, o.Timeout)
			case tc.verdicts && asked.Load() != 1:
				t.Fatalf("asked %d times, want once", asked.Load())
			}
		})
	}
}

// TestErrorScrubs: an *Error's message is the driver's without the
// connection string's credentials; Unwrap returns the driver's error
// itself, for errors.Is and errors.As.
func TestErrorScrubs(t *testing.T) {
	conn := "postgres://u:s3cret@127.0.0.1:1/db"
	_, err := dial.Postgres(t.Context(), conn+"?sslmode=bogus", dial.PostgresOptions{MaxConns: 1, Timeout: time.Second})
	checkFailure(t, err, dial.StageParse)
	if errors.Unwrap(err) == nil {
		t.Fatal("Unwrap: nil")
	}
	cctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = dial.Postgres(cctx, conn+"?sslmode=disable", dial.PostgresOptions{MaxConns: 1, Timeout: time.Second})
	checkFailure(t, err, dial.StagePing)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a ping on a cancelled context: %v, want context.Canceled in the chain", err)
	}
}
