-- Dead-letter classes as the sink records them (the comment in 00001
-- described "parked" as an expired wait; the sink uses it for events held
-- behind an earlier open dead letter of the same document, and records an
-- expired wait as "rejected", naming the reference and the wait).

-- +goose Up
COMMENT ON COLUMN cdc.dead_letters.error_class IS 'poison: Postgres refused the row itself (a CHECK, a unique key) or the event is undecodable; violation: breaks an invariant (an update or delete of an append-only ledger document); rejected: the transform refused a value (NULL/NaN/negative amount, unknown enum, a missing parent under policy reject, or one that did not appear within its wait) or the change exceeded the bus max_payload; parked: a later event of a document that already has an open dead letter, held until cdc dlq retry or drop.';

-- +goose Down
COMMENT ON COLUMN cdc.dead_letters.error_class IS 'poison: undecodable event; violation: breaks an invariant (e.g. update of a ledger entry); rejected: value refused by the schema (NULL/NaN/negative amount, unknown enum); parked: waited too long for a missing parent.';
