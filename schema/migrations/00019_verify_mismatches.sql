-- 00019 verify_mismatches: what the continuous verifier found.
--
-- `cdc run` and `cdc sink` with verify.continuous.rate compare documents
-- with their rows in the background (pkg/verify, continuous.go). A
-- difference that is still there after verify.continuous.recheck is a
-- mismatch: it is counted (cdc_verify_mismatches_total, alert
-- CDCVerifyMismatch) and recorded here, one row per document and check,
-- so that `cdc status` can say which document, which check and when,
-- whichever process found it and after it restarted. A mismatch found
-- again (every pass of the verifier while it lasts) updates its row:
-- last_seen, times and what it saw last. The table is small: one row per
-- document that ever differed. Nothing deletes rows; an operator who has
-- repaired a document may (cdc_sink has DELETE).

-- +goose Up
CREATE TABLE cdc.verify_mismatches (
    collection     text NOT NULL,
    doc_key        text NOT NULL,
    check_name     text NOT NULL,
    table_name     text,
    column_name    text,
    mongo_value    text,
    postgres_value text,
    detail         text NOT NULL,
    times          bigint NOT NULL DEFAULT 1 CHECK (times >= 1),
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, doc_key, check_name)
);
CREATE INDEX verify_mismatches_last_seen_idx ON cdc.verify_mismatches (last_seen DESC);
COMMENT ON TABLE cdc.verify_mismatches IS 'Mismatches the continuous verifier confirmed after its re-check (verify.continuous), one row per document and check; cdc status shows the newest.';
COMMENT ON COLUMN cdc.verify_mismatches.doc_key IS 'The document key (event.KeyString of its _id), as in cdc.doc_versions.';
COMMENT ON COLUMN cdc.verify_mismatches.check_name IS 'The verify check that failed: document_diff, idmap_mongo_to_pg or idmap_pg_to_mongo.';
COMMENT ON COLUMN cdc.verify_mismatches.times IS 'How many times the mismatch was confirmed (once per pass of the verifier while it lasts).';

-- +goose Down
DROP TABLE cdc.verify_mismatches;
