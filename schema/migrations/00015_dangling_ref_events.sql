-- References inside child tables (an element of an array, e.g.
-- deliveryInfo.attempts[].sellerId) that were written as NULL under policy
-- null keep the envelope of the document version that wrote them, so the
-- sink can re-apply that version's child rows when the parent arrives
-- (top-level columns are filled in place and need no copy).

-- +goose Up
ALTER TABLE cdc.dangling_refs ADD COLUMN event bytea;
COMMENT ON COLUMN cdc.dangling_refs.event IS 'for a reference inside a child table: the event (BSON envelope) of the document version that left it NULL, re-applied when the parent arrives';

-- +goose Down
ALTER TABLE cdc.dangling_refs DROP COLUMN event;
