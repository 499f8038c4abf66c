package pgtest

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// M is what a test binary's runner provides; *testing.M satisfies it, and so
// does the value WithShared returns (which is also the shape goleak's
// VerifyTestMain accepts).
type M interface {
	Run() int
}

var (
	sharedMu sync.Mutex
	shared   *Cluster
)

// Main starts the test binary's shared cluster, runs the tests, closes the
// cluster and returns the exit code, for use as
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, pgtest.Options{})) }
//
// If the cluster cannot start, no test runs and Main returns 1 after printing
// why to stderr. A failure to close the cluster turns a passing run into exit
// code 1.
func Main(m M, opts Options) int {
	return WithShared(m, opts).Run()
}

// WithShared wraps m so that its Run starts the shared cluster, runs m and
// closes the cluster, for composing with other TestMain helpers:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
//	}
func WithShared(m M, opts Options) M {
	return sharedRunner{m: m, opts: opts}
}

type sharedRunner struct {
	m    M
	opts Options
}

func (r sharedRunner) Run() int {
	c, err := Start(r.opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: pgtest: cannot start the shared PostgreSQL cluster: %v\n", err)
		return 1
	}
	sharedMu.Lock()
	if shared != nil {
		sharedMu.Unlock()
		_ = c.Close()
		fmt.Fprintln(os.Stderr, "FAIL: pgtest: a shared cluster is already running; call Main or WithShared once per test binary")
		return 1
	}
	shared = c
	sharedMu.Unlock()

	code := r.m.Run()

	sharedMu.Lock()
	shared = nil
	sharedMu.Unlock()
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: closing the shared cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Shared returns the test binary's shared cluster started by Main or
// WithShared. It panics, naming the fix, if TestMain did not start one: a
// test that needs PostgreSQL must not run without it.
func Shared() *Cluster {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		panic("pgtest: no shared cluster: call os.Exit(pgtest.Main(m, pgtest.Options{})) from TestMain")
	}
	return shared
}

// NewDatabase is Shared().NewDatabase(t), except that a missing shared
// cluster fails the test with t.Fatal instead of panicking.
func NewDatabase(t testing.TB) string {
	t.Helper()
	sharedMu.Lock()
	c := shared
	sharedMu.Unlock()
	if c == nil {
		t.Fatal("pgtest: no shared cluster: call os.Exit(pgtest.Main(m, pgtest.Options{})) from TestMain")
	}
	return c.NewDatabase(t)
}
