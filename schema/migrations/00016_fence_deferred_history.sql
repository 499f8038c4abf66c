-- 00016 fence_deferred_history: the sink's position becomes a true
-- low-water mark fenced between instances; events that cannot apply yet are
-- set aside in Postgres; dead letters keep their history.
--
-- Addresses (issue "Nothing lost under any operational event"):
--   a restart while a change waits for its parent lost it: waiting events
--     and the parts of an incomplete Mongo transaction are now written to
--     cdc.deferred_events in the same transaction that moves the position
--     past them, and are retried from there;
--   a re-created stream made the sink skip events: the position records the
--     identity (creation time) of the stream its sequence belongs to;
--   two sinks on one consumer overwrote each other's position: the row
--     carries the fence (owner, epoch), checked FOR UPDATE in every batch;
--   dead-letter retries overwrote the original class and reason: attempts
--     are appended to cdc.dead_letter_attempts; the first class, field and
--     reason stay as recorded.

-- +goose Up
ALTER TABLE cdc.sink_positions
    ADD COLUMN stream_created timestamptz,
    ADD COLUMN owner text,
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    ADD COLUMN fenced_at timestamptz;
COMMENT ON COLUMN cdc.sink_positions.stream_seq IS 'Low-water mark: every stream message at or below it is applied, skipped by the version guard, dead-lettered, or set aside in cdc.deferred_events.';
COMMENT ON COLUMN cdc.sink_positions.stream_created IS 'Creation time of the JetStream stream stream_seq belongs to; a stream with another creation time is not the one the position describes.';
COMMENT ON COLUMN cdc.sink_positions.owner IS 'Instance that holds the fence (host:pid:nonce).';
COMMENT ON COLUMN cdc.sink_positions.epoch IS 'Fence epoch, incremented by every instance that takes the consumer; a batch commits only if the row still carries its epoch.';

CREATE TABLE cdc.deferred_events (
    consumer    text NOT NULL,
    stream_seq  bigint NOT NULL CHECK (stream_seq > 0),
    kind        text NOT NULL CHECK (kind IN ('wait', 'txn')),
    event_id    text NOT NULL,
    collection  text NOT NULL,
    doc_key     text NOT NULL,
    txn_id      text,
    txn_index   int,
    txn_last    boolean NOT NULL DEFAULT false,
    reason      text NOT NULL,
    event       bytea NOT NULL,
    attempts    int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    first_seen  timestamptz NOT NULL DEFAULT now(),
    next_try    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, stream_seq)
);
CREATE INDEX deferred_events_txn_idx ON cdc.deferred_events (consumer, txn_id) WHERE txn_id IS NOT NULL;
CREATE INDEX deferred_events_due_idx ON cdc.deferred_events (consumer, kind, next_try);
COMMENT ON TABLE cdc.deferred_events IS 'Events the sink has passed with its position but not yet applied: kind wait (a parent under policy wait has not arrived) and kind txn (part of a Mongo transaction whose other events have not all arrived). Written and removed in the apply transactions.';

ALTER TABLE cdc.dead_letters
    ADD COLUMN txn_id text,
    ADD COLUMN txn_index int,
    ADD COLUMN txn_last boolean,
    ADD COLUMN cluster_time bigint,
    ADD COLUMN status_reason text,
    ADD COLUMN status_at timestamptz;
ALTER TABLE cdc.dead_letters DROP CONSTRAINT dead_letters_error_class_check;
ALTER TABLE cdc.dead_letters ADD CONSTRAINT dead_letters_error_class_check
    CHECK (error_class IN ('poison', 'violation', 'rejected', 'parked', 'incomplete'));
CREATE INDEX dead_letters_txn_idx ON cdc.dead_letters (txn_id) WHERE txn_id IS NOT NULL;
COMMENT ON COLUMN cdc.dead_letters.error_class IS 'As first recorded, never overwritten. poison: Postgres refused the row itself (a CHECK, a unique key, a program limit such as an index row too large) or the event is undecodable; violation: breaks an invariant (an update or delete of an append-only ledger document); rejected: the transform refused a value (NULL/NaN/negative amount, unknown enum, a missing parent under policy reject, one that did not appear within its wait, a wait over the configured bound) or the change exceeded the bus max_payload; parked: held behind an earlier open dead letter of the same document; incomplete: part of a Mongo transaction whose other events never all arrived.';
COMMENT ON COLUMN cdc.dead_letters.status_reason IS 'Why the status last changed (the operator''s --reason of a drop or reopen).';

CREATE TABLE cdc.dead_letter_attempts (
    id             bigserial PRIMARY KEY,
    dead_letter_id bigint NOT NULL REFERENCES cdc.dead_letters (id) ON DELETE CASCADE,
    at             timestamptz NOT NULL DEFAULT now(),
    action         text NOT NULL CHECK (action IN ('dead_lettered', 'retried', 'dropped', 'reopened')),
    outcome        text NOT NULL,
    error_class    text,
    field          text,
    value          text,
    reason         text
);
CREATE INDEX dead_letter_attempts_dl_idx ON cdc.dead_letter_attempts (dead_letter_id, id);
COMMENT ON TABLE cdc.dead_letter_attempts IS 'Every attempt on a dead letter, appended: the first recording, each retry with its outcome (applied, skipped, dead_lettered again with the new class and reason), each drop and reopen with the operator''s reason.';

-- Existing entries get their first history row.
INSERT INTO cdc.dead_letter_attempts (dead_letter_id, at, action, outcome, error_class, field, value, reason)
SELECT id, first_seen, 'dead_lettered', 'open', error_class, field, value, reason FROM cdc.dead_letters;

-- +goose Down
DROP TABLE cdc.dead_letter_attempts;
DROP INDEX cdc.dead_letters_txn_idx;
UPDATE cdc.dead_letters SET error_class = 'poison' WHERE error_class = 'incomplete';
ALTER TABLE cdc.dead_letters DROP CONSTRAINT dead_letters_error_class_check;
ALTER TABLE cdc.dead_letters ADD CONSTRAINT dead_letters_error_class_check
    CHECK (error_class IN ('poison', 'violation', 'rejected', 'parked'));
ALTER TABLE cdc.dead_letters
    DROP COLUMN txn_id, DROP COLUMN txn_index, DROP COLUMN txn_last, DROP COLUMN cluster_time,
    DROP COLUMN status_reason, DROP COLUMN status_at;
DROP TABLE cdc.deferred_events;
ALTER TABLE cdc.sink_positions
    DROP COLUMN stream_created, DROP COLUMN owner, DROP COLUMN epoch, DROP COLUMN fenced_at;
