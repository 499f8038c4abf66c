-- 00010 dualwrite_gaps: the application's log of failed dual-writes.
--
-- Addresses:
--   Backfill coverage matrix "pg_dualwrite_gaps (none - operational log)" and
--     workflow audit (003) FK-012 ("log+alert, don't throw" leaves gaps that
--     need a reconcile sweep): the replicator's replay command reads the open
--     gaps (resolved_at IS NULL) and re-reads those documents from Mongo.
--
-- The app writes this table, so it may already exist: CREATE ... IF NOT
-- EXISTS, and Down leaves the table (and the app's records) alone.

-- +goose Up
CREATE TABLE IF NOT EXISTS pg_dualwrite_gaps (
    id               bigserial PRIMARY KEY,
    collection       text NOT NULL,
    legacy_object_id text NOT NULL,
    operation        text NOT NULL,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz
);
CREATE INDEX IF NOT EXISTS pg_dualwrite_gaps_open_idx ON pg_dualwrite_gaps (created_at) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS pg_dualwrite_gaps_doc_idx ON pg_dualwrite_gaps (collection, legacy_object_id);

-- +goose Down
DROP INDEX IF EXISTS pg_dualwrite_gaps_doc_idx;
DROP INDEX IF EXISTS pg_dualwrite_gaps_open_idx;
