package pgtest

import "errors"

var (
	// ErrExternal is returned by the outage controls (Stop, StartAgain, Crash)
	// of a cluster that uses an external server given by CDC_TEST_PG_URL: the
	// harness does not own that server and cannot take it down. Outage tests
	// need the managed cluster (Options.Managed).
	ErrExternal = errors.New("pgtest: outage tests need the managed cluster; this cluster is the external server from " + EnvURL)

	// ErrNoBinaries is returned by Start when no PostgreSQL installation with
	// both initdb and postgres can be found.
	ErrNoBinaries = errors.New("pgtest: PostgreSQL server binaries (initdb, postgres) not found")

	// ErrClosed is returned by the methods of a cluster after Close.
	ErrClosed = errors.New("pgtest: cluster is closed")

	// ErrNotRunning is returned by calls that need the server to be up while a
	// managed cluster is stopped.
	ErrNotRunning = errors.New("pgtest: cluster is stopped")
)
