-- 00002 id_map: one uuid per (collection, legacy ObjectId).
--
-- Addresses:
--   Medium "id_map no PK and new_id no unique constraint" and the punch-list
--     row "id_map | PK + new_id unique".
--   DESIGN invariant 8 (id_map is exact): one mapping per (collection,
--     legacy_object_id), new_id unique.
--   CR-6 / CR-12: a mapping written twice, or two legacy ids sharing a
--     new_id, can no longer happen silently.
--
-- id_map is an application table (the app's dual-write writes it too), so it
-- lives in public and may already exist without any constraint. This
-- migration therefore upgrades in place:
--   * CREATE TABLE IF NOT EXISTS;
--   * refuse, with a message naming an example, when NULLs or duplicates
--     exist: each must be resolved by a person (which uuid did the app hand
--     out?), never by silently keeping one;
--   * add the primary key and the unique constraint only if missing. If an
--     operator pre-built matching unique indexes CONCURRENTLY on a large live
--     table, they are adopted (ADD CONSTRAINT ... USING INDEX) instead of
--     being rebuilt under an ACCESS EXCLUSIVE lock. Without them, the index
--     builds happen here, inside the migration's transaction: seconds for a
--     few million rows.
-- Down removes only the primary key and the unique constraint: the table and
-- its mappings may predate this migration and are never dropped by it.

-- +goose Up
CREATE TABLE IF NOT EXISTS id_map (
    collection       text NOT NULL,
    legacy_object_id text NOT NULL,
    new_id           uuid NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
DO $$
DECLARE
    bad   record;
    n     bigint;
    idx   text;
    pkdef text;
BEGIN
    -- A pre-existing table may lack created_at or carry new_id as text.
    ALTER TABLE id_map ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();

    SELECT count(*) INTO n FROM id_map
     WHERE collection IS NULL OR legacy_object_id IS NULL OR new_id IS NULL;
    IF n > 0 THEN
        RAISE EXCEPTION 'id_map upgrade refused: % row(s) have a NULL collection, legacy_object_id or new_id', n
            USING HINT = 'Find them with: SELECT * FROM id_map WHERE collection IS NULL OR legacy_object_id IS NULL OR new_id IS NULL; fix or delete them by hand, then migrate again. Nothing was changed.';
    END IF;

    IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = 'id_map'::regclass AND attname = 'new_id') <> 'uuid' THEN
        SELECT count(*) INTO n FROM id_map
         WHERE new_id::text !~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$';
        IF n > 0 THEN
            RAISE EXCEPTION 'id_map upgrade refused: % new_id value(s) are not uuids', n
                USING HINT = 'Nothing was changed.';
        END IF;
        ALTER TABLE id_map ALTER COLUMN new_id TYPE uuid USING new_id::text::uuid;
    END IF;

    SELECT collection, legacy_object_id, count(*) AS copies INTO bad
      FROM id_map GROUP BY collection, legacy_object_id HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        SELECT count(*) INTO n FROM (
            SELECT 1 FROM id_map GROUP BY collection, legacy_object_id HAVING count(*) > 1) d;
        RAISE EXCEPTION 'id_map upgrade refused: % (collection, legacy_object_id) pair(s) are mapped more than once, e.g. (%, %) has % rows',
            n, bad.collection, bad.legacy_object_id, bad.copies
            USING HINT = 'Each legacy id must map to exactly one new_id, the one the rows in Postgres use. Resolve by hand (SELECT collection, legacy_object_id, array_agg(new_id) FROM id_map GROUP BY 1, 2 HAVING count(*) > 1), then migrate again. Nothing was changed.';
    END IF;

    SELECT new_id, count(*) AS copies INTO bad
      FROM id_map GROUP BY new_id HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        SELECT count(*) INTO n FROM (SELECT 1 FROM id_map GROUP BY new_id HAVING count(*) > 1) d;
        RAISE EXCEPTION 'id_map upgrade refused: % new_id value(s) are shared by several legacy ids, e.g. % is used % times',
            n, bad.new_id, bad.copies
            USING HINT = 'A uuid must identify one document. Resolve by hand (SELECT new_id, array_agg(collection || ''/'' || legacy_object_id) FROM id_map GROUP BY 1 HAVING count(*) > 1), then migrate again. Nothing was changed.';
    END IF;

    ALTER TABLE id_map
        ALTER COLUMN collection SET NOT NULL,
        ALTER COLUMN legacy_object_id SET NOT NULL,
        ALTER COLUMN new_id SET NOT NULL;

    -- Primary key (collection, legacy_object_id).
    SELECT pg_get_constraintdef(c.oid) INTO pkdef
      FROM pg_constraint c WHERE c.conrelid = 'id_map'::regclass AND c.contype = 'p';
    IF pkdef IS NULL THEN
        SELECT i.relname INTO idx
          FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         WHERE x.indrelid = 'id_map'::regclass AND x.indisunique AND x.indisvalid
           AND x.indpred IS NULL AND x.indexprs IS NULL
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
           AND (SELECT array_agg(a.attname::text ORDER BY k.ord)
                  FROM unnest(x.indkey) WITH ORDINALITY k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum)
               = ARRAY['collection', 'legacy_object_id']
         LIMIT 1;
        IF idx IS NOT NULL THEN
            EXECUTE format('ALTER TABLE id_map ADD CONSTRAINT id_map_pkey PRIMARY KEY USING INDEX %I', idx);
        ELSE
            ALTER TABLE id_map ADD CONSTRAINT id_map_pkey PRIMARY KEY (collection, legacy_object_id);
        END IF;
    ELSIF pkdef <> 'PRIMARY KEY (collection, legacy_object_id)' THEN
        RAISE EXCEPTION 'id_map upgrade refused: it already has a different primary key: %', pkdef
            USING HINT = 'The replicator needs PRIMARY KEY (collection, legacy_object_id). Nothing was changed.';
    END IF;

    -- UNIQUE (new_id), unless an equivalent unique constraint exists.
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint c
         WHERE c.conrelid = 'id_map'::regclass AND c.contype IN ('u', 'p')
           AND pg_get_constraintdef(c.oid) IN ('UNIQUE (new_id)', 'PRIMARY KEY (new_id)')) THEN
        SELECT i.relname INTO idx
          FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         WHERE x.indrelid = 'id_map'::regclass AND x.indisunique AND x.indisvalid
           AND x.indpred IS NULL AND x.indexprs IS NULL AND x.indnatts = 1
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
           AND (SELECT a.attname FROM pg_attribute a
                 WHERE a.attrelid = x.indrelid AND a.attnum = x.indkey[0]) = 'new_id'
         LIMIT 1;
        IF idx IS NOT NULL THEN
            EXECUTE format('ALTER TABLE id_map ADD CONSTRAINT id_map_new_id_uq UNIQUE USING INDEX %I', idx);
        ELSE
            ALTER TABLE id_map ADD CONSTRAINT id_map_new_id_uq UNIQUE (new_id);
        END IF;
    END IF;
END
$$;
-- +goose StatementEnd

COMMENT ON TABLE id_map IS 'Legacy Mongo ObjectId -> uuid, one row per (collection, legacy_object_id); written in the same transaction as the row that needs it.';

-- +goose Down
-- The table and its mappings may predate 00002 (the app's dual-write created
-- it): only the constraints are removed, never the data.
ALTER TABLE id_map DROP CONSTRAINT IF EXISTS id_map_new_id_uq;
ALTER TABLE id_map DROP CONSTRAINT IF EXISTS id_map_pkey;
