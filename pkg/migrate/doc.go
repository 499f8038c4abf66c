// Package migrate applies the replicator's schema (package schema) to a
// PostgreSQL database with goose v3.
//
// The migrations are embedded in the binary; nothing is read from disk at
// run time. goose records applied versions in cdc.goose_db_version, in the
// replicator's own schema, so the application's schema holds no replicator
// bookkeeping. Up, Down and DownTo hold a PostgreSQL session advisory lock
// for their whole run, so replicas that start together migrate one after the
// other: the first applies what is pending, the others wait (up to
// LockTimeout) and then find nothing to do. Status takes no lock and writes
// nothing.
//
// Every session opened here pins search_path to public: the migrations name
// application tables unqualified and replicator tables as cdc.*, and a role
// whose name matches a schema (a role called "cdc", say) must not redirect
// application tables into it.
//
// Up adopts a database that already has the application's own tables
// (created outside these migrations, which would fail on them with their
// plain CREATE TABLE): it adds only what the migrations would have made and
// the tables lack, records those migrations as applied, and runs the later
// ones; or it refuses, naming every difference, where that would lose money
// or guess (adopt.go, UpAdopting, PlanUp; docs/adopt.md).
//
// Errors are wrapped with %w and say which migration failed; connection
// strings appear in messages and logs only through RedactURL.
package migrate
