-- 00018 typed_document_keys: a document key names one _id, by its BSON type
-- and value.
--
-- Addresses issue 14, item 2 ("_id types collide"): the key id_map
-- (legacy_object_id), cdc.doc_versions, cdc.dead_letters,
-- cdc.deferred_events and cdc.dangling_refs (doc_key) know a document by
-- was the ObjectId's 24 hex digits, a string _id's raw text, or the
-- canonical Extended JSON of anything else. ObjectId(X) and the string "X"
-- shared a row (deleting one deleted the other's), so did int32 7 and the
-- string '{"$numberInt":"7"}'; and int32 7, NumberLong(7) and 7.0, one
-- document in MongoDB (its _id index compares numbers by value), were
-- three. The sink now writes event.KeyString (pkg/event/key.go):
--   * ObjectId: 24 lower-case hex digits, unchanged (no mapping is
--     re-minted);
--   * string: the string itself, unless it is 24 hex digits (any case),
--     begins with '{' or '"', or is true, false or null: then JSON-quoted
--     ("\"65f1...\"", PostgreSQL's to_json escaping);
--   * number: one key per value, whatever the type: {"$numberLong":"N"}
--     for an integer in the int64 range, {"$numberDecimal":"S"} for
--     another value of at most 34 significant digits (S in the
--     to-scientific-string notation: 7.5, 1E+20, 1.5E-7),
--     {"$numberDouble":"S"} for a double whose exact value needs more (S
--     every digit of it), {"$numberDouble":"NaN"} and "(-)Infinity";
--   * anything else: canonical Extended JSON, as before.
--
-- This migration moves the existing keys to that form, with the function
-- cdc.typed_doc_key(old_key), which stays installed (see "Text ids" below):
--   * numeric Extended JSON keys ({"$numberInt"|"$numberLong"|
--     "$numberDouble"|"$numberDecimal": ...}) to the key of their value; a
--     decimal printed with more than 34 coefficient digits was a
--     non-canonical decimal128, which is zero;
--   * a key of 24 hex digits with an upper-case letter, or beginning with
--     '"', was a string (an ObjectId key is lower case; no other type's key
--     begins with a quote): quoted;
--   * a key beginning with '{' that is not canonical Extended JSON as the
--     driver prints it (valid JSON, no whitespace or bare number outside
--     its strings) was a string: quoted.
-- What the old form cannot tell apart without MongoDB stays as it was read
-- before: 24 lower-case hex digits are the ObjectId (a string _id of those
-- digits, if the collection had one, shared its row and now needs
-- `cdc replay ids` of '"<hex>"' to get its own), canonical Extended JSON
-- is the value it spells (not a string that happened to spell it), and
-- true, false and null are the boolean and null _ids.
--
-- Keys that now name one document (int32 7 and NumberLong(7) had two): in
-- cdc.doc_versions the newest version is kept, in cdc.dangling_refs the
-- newest record per column; in id_map two mappings would be two uuids for
-- one document, which a person resolves (which uuid do the rows use?): the
-- migration refuses, naming them, and changes nothing.
--
-- cdc.dangling_refs.ref_legacy_id needs nothing: references are ObjectIds
-- (24 lower-case hex, pkg/transform objectIDString). pg_dualwrite_gaps is
-- the application's log, in the application's form; replay ids reads its
-- keys as it reads an operator's (24 hex digits: the ObjectId).
--
-- Text ids: a mapping with id.type text stores the key itself as the row's
-- id; the migration cannot know those tables (they are configuration).
-- Move their ids with:
--   UPDATE <table> SET <id> = cdc.typed_doc_key(<id>) WHERE <id> <> cdc.typed_doc_key(<id>);
-- (none of the built-in transforms has one).
--
-- Down refuses while any key in the new form that the old one cannot
-- express exists (a numeric or quoted key): the old binary would key those
-- documents differently and mint second rows. Otherwise it drops the
-- functions.

-- +goose Up
-- +goose StatementBegin
-- The key of a finite number c * 10^q (c a string of digits); from_double:
-- the value is a double's exact value (only those can need more than 34
-- digits).
CREATE FUNCTION cdc.doc_key_digits(neg boolean, c text, q integer, from_double boolean) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
DECLARE
    z   integer;
    n   integer;
    adj integer;
    s   text;
    v   numeric;
BEGIN
    c := ltrim(c, '0');
    IF c = '' THEN
        RETURN '{"$numberLong":"0"}';
    END IF;
    z := length(c) - length(rtrim(c, '0'));
    c := rtrim(c, '0');
    q := q + z;
    n := length(c);
    IF q >= 0 AND n + q <= 19 THEN
        v := (c || repeat('0', q))::numeric;
        IF neg THEN
            v := -v;
        END IF;
        IF v BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
            RETURN '{"$numberLong":"' || v::bigint::text || '"}';
        END IF;
    END IF;
    adj := q + n - 1;
    IF q = 0 THEN
        s := c;
    ELSIF q < 0 AND adj >= -6 THEN
        IF n > -q THEN
            s := left(c, n + q) || '.' || substr(c, n + q + 1);
        ELSE
            s := '0.' || repeat('0', -q - n) || c;
        END IF;
    ELSE
        s := left(c, 1);
        IF n > 1 THEN
            s := s || '.' || substr(c, 2);
        END IF;
        s := s || 'E' || CASE WHEN adj >= 0 THEN '+' ELSE '' END || adj::text;
    END IF;
    IF neg THEN
        s := '-' || s;
    END IF;
    IF n <= 34 OR NOT from_double THEN
        RETURN '{"$numberDecimal":"' || s || '"}';
    END IF;
    RETURN '{"$numberDouble":"' || s || '"}';
END
$fn$;
-- +goose StatementEnd

-- +goose StatementBegin
-- The key of a double: its exact binary value m * 2^e as a decimal.
CREATE FUNCTION cdc.doc_key_double(x float8) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
DECLARE
    b   bytea;
    e   integer;
    m   numeric;
    t   text;
    dot integer;
BEGIN
    IF x = 'NaN'::float8 THEN
        RETURN '{"$numberDouble":"NaN"}';
    ELSIF x = 'Infinity'::float8 THEN
        RETURN '{"$numberDouble":"Infinity"}';
    ELSIF x = '-Infinity'::float8 THEN
        RETURN '{"$numberDouble":"-Infinity"}';
    END IF;
    b := float8send(x);
    e := ((get_byte(b, 0) & 127) << 4) | (get_byte(b, 1) >> 4);
    m := get_byte(b, 1) & 15;
    FOR i IN 2..7 LOOP
        m := m * 256 + get_byte(b, i);
    END LOOP;
    IF e = 0 THEN
        e := 1; -- subnormal or zero: no implicit bit
    ELSE
        m := m + 4503599627370496; -- 2^52
    END IF;
    -- Exact: a numeric product has the sum of its factors' scales.
    FOR i IN 1..abs(e - 1075) LOOP
        m := m * CASE WHEN e > 1075 THEN 2 ELSE 0.5 END;
    END LOOP;
    t := m::text;
    dot := strpos(t, '.');
    IF dot = 0 THEN
        RETURN cdc.doc_key_digits(get_byte(b, 0) >= 128, t, 0, true);
    END IF;
    RETURN cdc.doc_key_digits(get_byte(b, 0) >= 128, left(t, dot - 1) || substr(t, dot + 1), -(length(t) - dot), true);
END
$fn$;
-- +goose StatementEnd

-- +goose StatementBegin
-- The typed key (pkg/event KeyString) of a key in the form before 00018.
-- Not idempotent (a key beginning with '"' was a raw string and is quoted
-- again): apply it once per key.
CREATE FUNCTION cdc.typed_doc_key(k text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
DECLARE
    m   text[];
    d   text[];
    j   json;
    x   float8;
    c   text;
BEGIN
    IF k ~ '^[0-9a-f]{24}$' THEN
        RETURN k; -- an ObjectId (or a string of its digits: undecidable here)
    ELSIF k ~ '^[0-9A-Fa-f]{24}$' THEN
        RETURN to_json(k)::text; -- upper case: never an ObjectId's key
    ELSIF k IN ('true', 'false', 'null') THEN
        RETURN k;
    ELSIF left(k, 1) = '"' THEN
        RETURN to_json(k)::text;
    ELSIF left(k, 1) <> '{' THEN
        RETURN k;
    END IF;
    m := regexp_match(k, '^\{"\$number(Int|Long|Double|Decimal)":"([^"]*)"\}$');
    IF m IS NOT NULL THEN
        IF m[1] IN ('Int', 'Long') AND m[2] ~ '^(0|-?[1-9][0-9]{0,18})$' THEN
            BEGIN
                RETURN '{"$numberLong":"' || m[2]::bigint::text || '"}';
            EXCEPTION WHEN numeric_value_out_of_range THEN
                RETURN to_json(k)::text;
            END;
        ELSIF m[1] = 'Double' THEN
            BEGIN
                x := m[2]::float8;
            EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
                RETURN to_json(k)::text;
            END;
            RETURN cdc.doc_key_double(x);
        ELSIF m[1] = 'Decimal' THEN
            IF m[2] = 'NaN' THEN
                RETURN '{"$numberDouble":"NaN"}';
            ELSIF m[2] IN ('Infinity', '-Infinity') THEN
                RETURN '{"$numberDouble":"' || m[2] || '"}';
            END IF;
            d := regexp_match(m[2], '^(-?)([0-9]+)(?:\.([0-9]+))?(?:[Ee]([+-]?[0-9]{1,5}))?$');
            IF d IS NOT NULL THEN
                c := d[2] || coalesce(d[3], '');
                IF length(ltrim(c, '0')) > 34 THEN
                    -- The driver printed a non-canonical coefficient
                    -- (10^34 or more): that decimal is zero.
                    RETURN '{"$numberLong":"0"}';
                END IF;
                RETURN cdc.doc_key_digits(d[1] = '-', c, coalesce(d[4]::integer, 0) - length(coalesce(d[3], '')), false);
            END IF;
        END IF;
        RETURN to_json(k)::text; -- a number wrapper around no number: a string
    END IF;
    -- Canonical Extended JSON of another type (binary, date, document,
    -- MinKey, ...) as the driver prints it: valid JSON, and outside its
    -- strings only punctuation and true/false/null (no whitespace), the
    -- only bare numbers being those of $timestamp, $minKey and $maxKey.
    BEGIN
        j := k::json;
    EXCEPTION WHEN invalid_text_representation THEN
        RETURN to_json(k)::text;
    END;
    c := regexp_replace(k, '"\$timestamp":\{"t":[0-9]+,"i":[0-9]+\}', '"":""', 'g');
    c := regexp_replace(c, '"\$(minKey|maxKey)":1([,}])', '"":""\2', 'g');
    c := regexp_replace(c, '"(\\.|[^"\\])*"', '', 'g');
    IF json_typeof(j) = 'object' AND regexp_replace(c, 'true|false|null', '', 'g') ~ '^[][{}:,]*$' THEN
        RETURN k;
    END IF;
    RETURN to_json(k)::text;
END
$fn$;
-- +goose StatementEnd

COMMENT ON FUNCTION cdc.typed_doc_key(text) IS 'The typed document key (pkg/event KeyString) of a key written before migration 00018; for text-id tables: UPDATE t SET id = cdc.typed_doc_key(id) WHERE id <> cdc.typed_doc_key(id). Apply once.';

-- +goose StatementBegin
DO $$
DECLARE
    r   record;
    bad record;
BEGIN
    -- Only keys that are not ObjectIds can change.
    CREATE TEMP TABLE typed_keys ON COMMIT DROP AS
        SELECT 'id_map'::text AS tbl, collection, legacy_object_id AS old_key, cdc.typed_doc_key(legacy_object_id) AS new_key
          FROM id_map WHERE legacy_object_id !~ '^[0-9a-f]{24}$'
        UNION ALL
        SELECT 'doc_versions', collection, doc_key, cdc.typed_doc_key(doc_key)
          FROM cdc.doc_versions WHERE doc_key !~ '^[0-9a-f]{24}$'
        UNION ALL
        SELECT DISTINCT 'dangling_refs', collection, doc_key, cdc.typed_doc_key(doc_key)
          FROM cdc.dangling_refs WHERE doc_key !~ '^[0-9a-f]{24}$';
    DELETE FROM typed_keys WHERE old_key = new_key;
    ANALYZE typed_keys;

    -- id_map: two mappings of one document cannot both stay.
    SELECT f.collection, f.new_key, array_agg(f.old_key ORDER BY f.old_key) AS old_keys, count(*) AS n INTO bad
      FROM (SELECT collection, new_key, old_key FROM typed_keys WHERE tbl = 'id_map'
            UNION ALL
            SELECT DISTINCT m.collection, m.legacy_object_id, m.legacy_object_id
              FROM typed_keys t JOIN id_map m ON m.collection = t.collection AND m.legacy_object_id = t.new_key
             WHERE t.tbl = 'id_map'
               AND NOT EXISTS (SELECT 1 FROM typed_keys o WHERE o.tbl = 'id_map' AND o.collection = m.collection AND o.old_key = m.legacy_object_id)) f
     GROUP BY f.collection, f.new_key HAVING count(*) > 1
     ORDER BY f.collection, f.new_key LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'typed document keys refused: id_map maps one document of % under % keys (%), which are now the one key %',
            bad.collection, bad.n, array_to_string(bad.old_keys, ', '), bad.new_key
            USING HINT = 'MongoDB holds those _ids equal (numbers compare by value): one document, but two uuids. Keep the entry whose new_id the rows use and delete the other (SELECT * FROM id_map WHERE collection = ''' || bad.collection || ''' AND legacy_object_id = ANY(''' || bad.old_keys::text || ''')), then migrate again. Nothing was changed.';
    END IF;

    -- doc_versions: the newest version of the document wins.
    DELETE FROM cdc.doc_versions v
     USING (SELECT collection, old_key, row_number() OVER (PARTITION BY collection, new_key
                   ORDER BY cluster_time DESC, txn_index DESC, (old_key = new_key) DESC, old_key) AS rn
              FROM (SELECT t.collection, t.old_key, t.new_key, dv.cluster_time, dv.txn_index
                      FROM typed_keys t JOIN cdc.doc_versions dv ON dv.collection = t.collection AND dv.doc_key = t.old_key
                     WHERE t.tbl = 'doc_versions'
                    UNION ALL
                    SELECT DISTINCT dv.collection, dv.doc_key, dv.doc_key, dv.cluster_time, dv.txn_index
                      FROM typed_keys t JOIN cdc.doc_versions dv ON dv.collection = t.collection AND dv.doc_key = t.new_key
                     WHERE t.tbl = 'doc_versions'
                       AND NOT EXISTS (SELECT 1 FROM typed_keys o WHERE o.tbl = 'doc_versions' AND o.collection = dv.collection AND o.old_key = dv.doc_key)) f) l
     WHERE l.rn > 1 AND v.collection = l.collection AND v.doc_key = l.old_key;

    -- dangling_refs: per column, the newest record wins.
    DELETE FROM cdc.dangling_refs d
     USING (SELECT collection, old_key, column_name, row_number() OVER (PARTITION BY collection, new_key, column_name
                   ORDER BY first_seen DESC, (old_key = new_key) DESC, old_key) AS rn
              FROM (SELECT t.collection, t.old_key, t.new_key, dr.column_name, dr.first_seen
                      FROM typed_keys t JOIN cdc.dangling_refs dr ON dr.collection = t.collection AND dr.doc_key = t.old_key
                     WHERE t.tbl = 'dangling_refs'
                    UNION ALL
                    SELECT DISTINCT dr.collection, dr.doc_key, dr.doc_key, dr.column_name, dr.first_seen
                      FROM typed_keys t JOIN cdc.dangling_refs dr ON dr.collection = t.collection AND dr.doc_key = t.new_key
                     WHERE t.tbl = 'dangling_refs'
                       AND NOT EXISTS (SELECT 1 FROM typed_keys o WHERE o.tbl = 'dangling_refs' AND o.collection = dr.collection AND o.old_key = dr.doc_key)) f) l
     WHERE l.rn > 1 AND d.collection = l.collection AND d.doc_key = l.old_key AND d.column_name = l.column_name;

    -- Move the keys one row at a time, longest first: a key that becomes
    -- another row's current key (the quoted "X" is the key of the string
    -- '"X"', which is quoted again) only ever meets a longer one, already
    -- moved, so no primary key sees two rows at once.
    FOR r IN SELECT * FROM typed_keys ORDER BY length(old_key) DESC, old_key LOOP
        IF r.tbl = 'id_map' THEN
            UPDATE id_map SET legacy_object_id = r.new_key WHERE collection = r.collection AND legacy_object_id = r.old_key;
        ELSIF r.tbl = 'doc_versions' THEN
            UPDATE cdc.doc_versions SET doc_key = r.new_key WHERE collection = r.collection AND doc_key = r.old_key;
        ELSE
            UPDATE cdc.dangling_refs SET doc_key = r.new_key WHERE collection = r.collection AND doc_key = r.old_key;
        END IF;
    END LOOP;

    -- No key is unique in these two.
    UPDATE cdc.dead_letters SET doc_key = n.k
      FROM (SELECT id, cdc.typed_doc_key(doc_key) AS k FROM cdc.dead_letters WHERE doc_key !~ '^[0-9a-f]{24}$') n
     WHERE cdc.dead_letters.id = n.id AND cdc.dead_letters.doc_key <> n.k;
    UPDATE cdc.deferred_events SET doc_key = n.k
      FROM (SELECT consumer, stream_seq, cdc.typed_doc_key(doc_key) AS k FROM cdc.deferred_events WHERE doc_key !~ '^[0-9a-f]{24}$') n
     WHERE cdc.deferred_events.consumer = n.consumer AND cdc.deferred_events.stream_seq = n.stream_seq AND cdc.deferred_events.doc_key <> n.k;
    DROP TABLE typed_keys;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    bad record;
BEGIN
    SELECT * INTO bad FROM (
        SELECT 'id_map' AS tbl, collection, legacy_object_id AS doc_key FROM id_map
        UNION ALL SELECT 'cdc.doc_versions', collection, doc_key FROM cdc.doc_versions
        UNION ALL SELECT 'cdc.dangling_refs', collection, doc_key FROM cdc.dangling_refs
        UNION ALL SELECT 'cdc.dead_letters', collection, doc_key FROM cdc.dead_letters
        UNION ALL SELECT 'cdc.deferred_events', collection, doc_key FROM cdc.deferred_events) k
     WHERE left(k.doc_key, 1) = '"' OR k.doc_key LIKE '{"$number%'
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'typed document keys: Down refused: % has the key % (collection %), which the format before 00018 cannot express',
            bad.tbl, bad.doc_key, bad.collection
            USING HINT = 'Keys of numeric _ids lost their BSON type and quoted string keys would collide with ObjectIds again: the previous binary would key those documents differently. Delete those rows by hand if that is acceptable, then migrate down again. Nothing was changed.';
    END IF;
END
$$;
-- +goose StatementEnd
DROP FUNCTION cdc.typed_doc_key(text);
DROP FUNCTION cdc.doc_key_double(float8);
DROP FUNCTION cdc.doc_key_digits(boolean, text, integer, boolean);
