-- 00013 search_indexes: trigram indexes for the app's text search.
--
-- Addresses:
--   Punch-list row "users (search) | trigram" and Code HIGH "getUsersList:
--     $regex on name/email -> PG seqscan; needs pg_trgm GIN index + ILIKE".
--   CR-19 (searchPurchaseRequests fetches 100 rows and filters in JS): a
--     trigram index on lower(title) serves WHERE lower(title) LIKE ... LIMIT 20.
--   Migration HIGH "All 70+ CREATE INDEX are non-CONCURRENTLY": this is the
--     pattern for indexes on tables that may already hold data.
--
-- NO TRANSACTION, because CREATE INDEX CONCURRENTLY cannot run inside one.
-- Each index is dropped (CONCURRENTLY, IF EXISTS) before it is built: a
-- CONCURRENTLY build that fails half-way leaves an INVALID index behind, and
-- "CREATE INDEX ... IF NOT EXISTS" would then keep the broken one. Re-running
-- this migration after a failure is therefore always safe.
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner can
-- create it without superuser. Down keeps the extension, which other objects
-- may use.

-- +goose NO TRANSACTION
-- +goose Up
CREATE EXTENSION IF NOT EXISTS pg_trgm;

DROP INDEX CONCURRENTLY IF EXISTS idx_users_name_trgm;
CREATE INDEX CONCURRENTLY idx_users_name_trgm ON users USING GIN (
    lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, ''))
    gin_trgm_ops);

DROP INDEX CONCURRENTLY IF EXISTS idx_pr_title_trgm;
CREATE INDEX CONCURRENTLY idx_pr_title_trgm ON purchase_requests USING GIN (lower(title) gin_trgm_ops);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS idx_pr_title_trgm;
DROP INDEX CONCURRENTLY IF EXISTS idx_users_name_trgm;
