-- 00001 cdc_bookkeeping: the replicator's own tables, in schema cdc.
--
-- Addresses:
--   DESIGN "Schema": the replicator's bookkeeping lives in its own schema,
--     so the application's tables carry no replicator columns.
--   CR-6 (id_map and data written outside one transaction): the sink writes
--     cdc.sink_positions, cdc.doc_versions and its data rows in ONE
--     transaction, so a crash can never leave the position ahead of the data
--     or the data ahead of the position.
--   CR-4 / CR-5 (NULL amounts silently turned into 0, rows skipped silently):
--     whatever cannot be applied is parked in cdc.dead_letters with the field
--     and the reason; nothing is coerced and nothing disappears.
--   CR-12 (dropped id_map entries -> dangling FKs nobody sees): a reference
--     stored as NULL because its parent was missing is recorded in
--     cdc.dangling_refs until the parent arrives.
--
-- Cluster times (Mongo's Timestamp) are stored as one bigint,
-- (seconds << 32) | increment, which orders exactly as Mongo orders them.
-- schema cdc itself is created by package migrate before goose runs (its
-- version table lives there), and is never dropped by a Down.

-- +goose Up
CREATE SCHEMA IF NOT EXISTS cdc;

-- The sink's applied JetStream position, one row per durable consumer,
-- written in the same transaction as the rows it applied.
CREATE TABLE cdc.sink_positions (
    consumer     text PRIMARY KEY,
    stream       text NOT NULL,
    stream_seq   bigint NOT NULL CHECK (stream_seq >= 0),
    cluster_time bigint,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdc.sink_positions IS 'Applied JetStream position per sink consumer; written in the same transaction as the applied rows.';
COMMENT ON COLUMN cdc.sink_positions.cluster_time IS 'Cluster time of the last applied event: (seconds << 32) | increment.';

-- Version guard and tombstones: the newest (cluster_time, txn_index)
-- applied per document. An older event never overwrites a newer version,
-- and a delete stays a delete (deleted = true) so a late, older insert or
-- update cannot resurrect the row.
CREATE TABLE cdc.doc_versions (
    collection   text NOT NULL,
    doc_key      text NOT NULL,
    cluster_time bigint NOT NULL,
    txn_index    int NOT NULL DEFAULT 0 CHECK (txn_index >= 0),
    deleted      boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, doc_key)
);
COMMENT ON TABLE cdc.doc_versions IS 'Newest applied version per source document (version guard) and delete tombstones.';

-- Events that could not be applied. event_id is the envelope's unique id,
-- so re-parking the same event bumps attempts/last_seen instead of adding a
-- row.
CREATE TABLE cdc.dead_letters (
    id          bigserial PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,
    collection  text NOT NULL,
    doc_key     text NOT NULL,
    stream_seq  bigint,
    error_class text NOT NULL CHECK (error_class IN ('poison', 'violation', 'rejected', 'parked')),
    field       text,
    value       text,
    reason      text NOT NULL,
    event       jsonb NOT NULL,
    attempts    int NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'retried', 'dropped')),
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_doc_idx ON cdc.dead_letters (collection, doc_key);
CREATE INDEX dead_letters_status_idx ON cdc.dead_letters (status);
COMMENT ON COLUMN cdc.dead_letters.error_class IS 'poison: undecodable event; violation: breaks an invariant (e.g. update of a ledger entry); rejected: value refused by the schema (NULL/NaN/negative amount, unknown enum); parked: waited too long for a missing parent.';

-- References written as NULL because the referenced document was missing
-- (the per-column policy "set NULL and record it"). The row is deleted when
-- the sink fills the reference in.
CREATE TABLE cdc.dangling_refs (
    collection     text NOT NULL,
    doc_key        text NOT NULL,
    column_name    text NOT NULL,
    ref_collection text NOT NULL,
    ref_legacy_id  text NOT NULL,
    first_seen     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, doc_key, column_name)
);
-- When a parent arrives, find the children waiting for it.
CREATE INDEX dangling_refs_parent_idx ON cdc.dangling_refs (ref_collection, ref_legacy_id);

-- +goose Down
DROP TABLE cdc.dangling_refs;
DROP TABLE cdc.dead_letters;
DROP TABLE cdc.doc_versions;
DROP TABLE cdc.sink_positions;
