// Package schema holds the replicator's versioned PostgreSQL migrations,
// embedded in the binary and applied by package migrate (goose v3).
//
// migrations/ holds plain SQL goose files, NNNNN_name.sql, each with
// "-- +goose Up" and "-- +goose Down" sections and a header comment naming the
// audit items it addresses (CR-n and the index and constraint punch list of
// the Mongo->PG audit in shared/seeds). Versions are sequential and never
// reused; a shipped migration is never edited, a new one is added.
//
// Two schemas are involved: the application's tables live in public (the
// migrations name them unqualified and package migrate pins search_path to
// public), the replicator's own bookkeeping lives in cdc, together with the
// goose version table cdc.goose_db_version.
package schema

import "embed"

// Migrations is the migrations/ directory; goose reads it through
// fs.Sub(Migrations, "migrations").
//
//go:embed migrations/*.sql
var Migrations embed.FS
