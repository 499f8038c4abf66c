package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/redact"
)

// superuser is the bootstrap role of a managed cluster.
const superuser = "postgres"

// Cluster is a PostgreSQL server for tests: either one the harness runs
// itself (managed) or an external one named by CDC_TEST_PG_URL. Its methods
// are safe for concurrent use. Close releases it.
type Cluster struct {
	opts     Options
	external bool
	adminURL string
	base     *url.URL // adminURL parsed, to derive per-database URLs

	// Managed clusters only.
	inst    installation
	as      *runAs
	tmpDir  string
	dataDir string
	logPath string
	port    int

	mu     sync.Mutex
	proc   *serverProcess // nil while stopped
	closed bool
}

// Start returns a running cluster: the external server of CDC_TEST_PG_URL if
// that is set (and Options.Managed is not), otherwise a new managed server
// (see the package documentation). It fails, never skips, when neither is
// possible, with an error that says what is missing. The caller must Close
// the cluster.
func Start(opts Options) (*Cluster, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	// Start has no caller context by contract (it runs from TestMain);
	// StartTimeout bounds it instead.
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	if raw := os.Getenv(EnvURL); raw != "" && !opts.Managed && opts.TLS == nil {
		return startExternal(ctx, opts, raw)
	}
	return startManaged(ctx, opts)
}

func startExternal(ctx context.Context, opts Options, raw string) (*Cluster, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		// url.Parse errors quote the input, password included: do not wrap.
		return nil, fmt.Errorf("pgtest: %s must be a postgres:// URL (got %s)", EnvURL, redact.URL(raw))
	}
	c := &Cluster{opts: opts, external: true, adminURL: raw, base: u}
	if err := ping(ctx, raw); err != nil {
		return nil, fmt.Errorf("pgtest: cannot reach the server in %s (%s): %w", EnvURL, redact.URL(raw), err)
	}
	return c, nil
}

func startManaged(ctx context.Context, opts Options) (_ *Cluster, err error) {
	inst, err := findInstallation(ctx, opts.BinDir)
	if err != nil {
		return nil, err
	}
	as, err := lookupRunAs(opts.RunAsUser)
	if err != nil {
		return nil, err
	}
	sweepStale()
	tmp, err := os.MkdirTemp("", tempPattern)
	if err != nil {
		return nil, fmt.Errorf("pgtest: create temp dir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := writeOwner(tmp); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := as.checkReachable(tmp); err != nil {
		return nil, err
	}
	if as != nil {
		if err := os.Chown(tmp, int(as.uid), int(as.gid)); err != nil {
			return nil, fmt.Errorf("pgtest: hand %s to user %s: %w", tmp, as.name, err)
		}
	}
	c := &Cluster{
		opts:    opts,
		inst:    inst,
		as:      as,
		tmpDir:  tmp,
		dataDir: filepath.Join(tmp, "data"),
		logPath: filepath.Join(tmp, "postgres.log"),
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if err := c.installTLS(); err != nil { // tls.go; nothing without Options.TLS
		return nil, err
	}
	// Another process may grab the port between freePort and the bind;
	// try a few ports before giving up.
	for attempt := 1; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		c.setAdminURL()
		c.proc, err = c.launch(ctx)
		if err == nil {
			return c, nil
		}
		if attempt == 3 || !c.portInUse(err) {
			return nil, err
		}
	}
}

func (c *Cluster) setAdminURL() {
	if c.opts.TLS != nil {
		// TCP requires a client certificate; the harness itself uses the
		// unix socket (trusted in pg_hba.conf).
		c.base = &url.URL{
			Scheme:   "postgres",
			User:     url.User(superuser),
			Path:     "/postgres",
			RawQuery: url.Values{"host": {c.tmpDir}, "port": {strconv.Itoa(c.port)}, "sslmode": {"disable"}}.Encode(),
		}
		c.adminURL = c.base.String()
		return
	}
	c.base = &url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     "127.0.0.1:" + strconv.Itoa(c.port),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	c.adminURL = c.base.String()
}

// AdminURL returns the URL of the cluster's maintenance database with a role
// that may create databases (with Options.TLS, over the unix socket). Tests
// should work in their own database (NewDatabase), not here.
func (c *Cluster) AdminURL() string { return c.adminURL }

// External reports whether the cluster is the external server named by
// CDC_TEST_PG_URL rather than one the harness manages.
func (c *Cluster) External() bool { return c.external }

// DatabaseURL returns the URL of database name on this cluster, with the
// admin URL's role, host and parameters.
func (c *Cluster) DatabaseURL(name string) string {
	u := *c.base
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// NewDatabase creates an empty database with a unique name, registers its
// removal with t.Cleanup (leftover connections are terminated first) and
// returns its URL, e.g. postgres://postgres@127.0.0.1:PORT/t_name_1a2b3c4d?sslmode=disable.
// It stops the test with t.Fatal if the database cannot be created. Safe for
// parallel tests.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.createDatabase(ctx, name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		switch err := c.dropDatabase(ctx, name); {
		case err == nil, errors.Is(err, ErrClosed):
			// Closed: the data directory is gone with the database in it.
		case errors.Is(err, ErrNotRunning):
			t.Logf("pgtest: database %s not dropped: the cluster was left stopped (Close removes it)", name)
		default:
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.DatabaseURL(name)
}

// databaseName makes a valid, unique identifier (at most 63 bytes) from a
// test name; the random suffix keeps names unique across test binaries
// sharing one external server.
func databaseName(testName string) string {
	var b strings.Builder
	underscore := false
	for _, r := range strings.ToLower(testName) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			underscore = false
		} else if !underscore {
			b.WriteByte('_')
			underscore = true
		}
		if b.Len() >= 40 {
			break
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "t_" + strings.Trim(b.String(), "_") + "_" + hex.EncodeToString(rnd[:])
}

// adminConn connects to the maintenance database, refusing when the cluster
// is closed or stopped.
func (c *Cluster) adminConn(ctx context.Context) (*pgx.Conn, error) {
	c.mu.Lock()
	closed, stopped := c.closed, !c.external && c.proc == nil
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if stopped {
		return nil, ErrNotRunning
	}
	conn, err := pgx.Connect(ctx, c.adminURL)
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect to %s: %w", redact.URL(c.adminURL), err)
	}
	return conn, nil
}

func (c *Cluster) createDatabase(ctx context.Context, name string) error {
	conn, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

func (c *Cluster) dropDatabase(ctx context.Context, name string) error {
	conn, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx,
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
		name); err != nil {
		return fmt.Errorf("terminate connections: %w", err)
	}
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return err
	}
	stmt := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize()
	if version >= 130000 {
		stmt += " WITH (FORCE)" // also ends connections opened since the terminate
	}
	_, err = conn.Exec(ctx, stmt)
	return err
}

// Stop shuts a managed server down (fast shutdown: open transactions roll
// back, clients are disconnected, a checkpoint is written) and waits for it
// to exit; connections fail until StartAgain. If ctx ends first the server
// is killed. Stopping a stopped cluster does nothing. With an external server
// Stop returns ErrExternal.
func (c *Cluster) Stop(ctx context.Context) error {
	return c.halt(ctx, syscall.SIGINT)
}

// Crash ends a managed server the hard way (immediate shutdown: no
// checkpoint, clients cut off), as a kill -9 of PostgreSQL would, so the
// next StartAgain runs crash recovery. Committed transactions survive
// (synchronous_commit stays on). With an external server it returns
// ErrExternal.
func (c *Cluster) Crash(ctx context.Context) error {
	return c.halt(ctx, syscall.SIGQUIT)
}

func (c *Cluster) halt(ctx context.Context, sig syscall.Signal) error {
	if c.external {
		return ErrExternal
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.proc == nil {
		return nil
	}
	err := c.proc.shutdown(ctx, sig)
	c.proc = nil
	return err
}

// StartAgain restarts a stopped or crashed managed server on the same port
// with the same data, and waits until it accepts connections (after crash
// recovery, if needed). URLs handed out before stay valid. It fails if the
// server is running, if the port was taken meanwhile, or with ErrExternal
// for an external server.
func (c *Cluster) StartAgain(ctx context.Context) error {
	if c.external {
		return ErrExternal
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.proc != nil {
		return errors.New("pgtest: StartAgain: the server is running; Stop it first")
	}
	proc, err := c.launch(ctx)
	if err != nil {
		return err
	}
	c.proc = proc
	return nil
}

// Close stops a managed server and removes its temporary directory, data
// included. For an external server it only marks the cluster closed: the
// server and databases of other users are left alone (each test's database
// is dropped by its own cleanup). Close is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.external {
		return nil
	}
	var errs []error
	if c.proc != nil {
		// Close has no caller context; bound the shutdown instead.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, c.proc.shutdown(ctx, syscall.SIGINT))
		cancel()
		c.proc = nil
	}
	if err := os.RemoveAll(c.tmpDir); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: remove %s: %w", c.tmpDir, err))
	}
	return errors.Join(errs...)
}
