// Package pgtest gives tests a real, throwaway PostgreSQL server.
//
// A test binary starts one [Cluster] and every test takes its own fresh
// database from it, so each package pays for initdb once and tests stay
// isolated from each other:
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.Main(m, pgtest.Options{}))
//	}
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.NewDatabase(t) // dropped again in t.Cleanup
//		...
//	}
//
// With goleak, wrap the runner instead so the leak check runs after the
// cluster is gone:
//
//	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
//
// # Where the server comes from
//
// If the environment variable CDC_TEST_PG_URL holds a postgres:// URL, that
// server is used ("external" mode): databases are created on it with CREATE
// DATABASE and dropped afterwards, and the server itself is never stopped.
//
// Otherwise the harness runs its own server ("managed" mode) from the
// machine's PostgreSQL binaries: initdb and postgres taken from one
// installation directory (Options.BinDir, else the highest version found
// under /usr/lib/postgresql/*/bin or on PATH), a data directory in a fresh
// temporary directory, the server listening on a free 127.0.0.1 port with its
// unix socket in that temporary directory. When the test runs as root (as CI
// does), initdb and postgres refuse to run as root, so they run as an
// unprivileged user ("nobody" unless Options.RunAsUser says otherwise) and the
// temporary directory is handed to that user. If no binaries are found, Start
// fails and says how to install them (apt-get install postgresql); it never
// skips.
//
// The managed server is supervised directly (pg_ctl is not needed): it is a
// child of the test process, in its own process group, and receives SIGQUIT
// (immediate shutdown) if the test process dies, so a killed test run does
// not leave a server behind.
//
// # Outages
//
// A managed cluster can be stopped and started again on the same port with
// the same data ([Cluster.Stop], [Cluster.StartAgain]) or crashed
// ([Cluster.Crash], an immediate shutdown that needs crash recovery on the
// next start), so tests can take PostgreSQL away for a few seconds in the
// middle of a load. In external mode these return [ErrExternal]. Tests that
// cause outages should start their own cluster with [Start] and
// Options.Managed rather than stopping the shared one under other tests.
//
// # TLS
//
// Options.TLS starts a managed server that requires TLS and a client
// certificate on TCP (ssl=on, ssl_ca_file, hostssl ... clientcert=verify-full
// in pg_hba.conf); the harness itself then works over the unix socket, and
// tests connect with [Cluster.TCPURL] and sslmode=verify-full. [NewCA] makes
// the certificates (a CA, server and client certificates) in the test:
//
//	ca := pgtest.NewCA(t, "pg")
//	cert, key := ca.Server(t, "server", "localhost")
//	c, err := pgtest.Start(pgtest.Options{TLS: &pgtest.TLS{CertFile: cert, KeyFile: key, CAFile: ca.CertFile}})
//
// # Durability settings
//
// Options.Fsync is off by default: fsync=off and full_page_writes=off, which
// only matter if the operating system crashes. synchronous_commit always stays
// on, so a committed transaction survives a crash or kill of PostgreSQL itself
// exactly as in production; outage tests therefore test the real thing.
// Benchmarks set Fsync to measure with fsync on.
package pgtest
