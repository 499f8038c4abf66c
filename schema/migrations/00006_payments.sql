-- 00006 payments: payments and payment quotes (Tier C).
--
-- Addresses:
--   CR-8 and punch-list row "payments | CHECK amount > 0"
--     (ck_payments_amount_pos). Together with amount NOT NULL this is also
--     the schema half of CR-4: a NULL or zero amount can no longer be
--     stored; the sink dead-letters it instead of writing '0'.
--   CR-7 and punch-list row "payment_quotes | CHECK money fields"
--     (ck_pq_pos: offer_amount > 0 AND fx_rate > 0 AND token_price_usd > 0).
--   HIGH / punch-list row "payment_quotes | CHECK snap-up"
--     (ck_pq_settle: settle_amount >= raw_settle_amount).
--   Punch list: payments (purchase_request_id, status) idx_payments_pr_status
--     and the disputed partial index idx_payments_disputed. Plain CREATE
--     INDEX: new, empty table (see 00004).
--   Workflow audit (003) line 127 / FK-010: the Request Network idempotency
--     index, partial exactly as specified, on the RN request id:
--     UNIQUE (rn_request_id) WHERE provider = 'request_network' AND
--     direction = 'in' AND status = 'pending'.
--   Refactoring tracker "Payment metadata schemaless -> promote
--     is_template_checkout, rn_request_id to typed columns": both are columns
--     now (filled by the transform from metadata.isTemplateCheckout and
--     metadata.rnRequestId); metadata jsonb stays for the rest.
--   CR-13 (lost update on status): the status enum makes the terminal states
--     explicit for UPDATE ... WHERE status NOT IN (...) guards.
--   FKs (purchase_request_id, seller_offer_id, buyer_id, seller_id, and the
--     quote's references) come in 00011 / 00012. payment_quotes is written by
--     the app at run time (no Mongo collection), so it has no backfill.

-- +goose Up
CREATE TABLE payments (
    id                   uuid PRIMARY KEY,
    purchase_request_id  uuid,
    seller_offer_id      uuid,
    buyer_id             uuid,
    seller_id            uuid,
    provider             payment_provider NOT NULL,
    direction            payment_direction NOT NULL,
    status               payment_status NOT NULL DEFAULT 'pending',
    escrow_state         escrow_state,
    amount               numeric(38,18) NOT NULL,
    currency             text NOT NULL,
    chain_id             bigint,
    token_address        text,
    payer_address        text,
    payee_address        text,
    tx_hash              text,
    rn_request_id        text,
    is_template_checkout boolean NOT NULL DEFAULT false,
    disputed             boolean NOT NULL DEFAULT false,
    failure_reason       text,
    metadata             jsonb NOT NULL DEFAULT '{}',
    paid_at              timestamptz,
    completed_at         timestamptz,
    refunded_at          timestamptz,
    cancelled_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_payments_amount_pos CHECK (amount > 0),
    CONSTRAINT ck_payments_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
COMMENT ON COLUMN payments.rn_request_id IS 'Request Network request id (Mongo metadata.rnRequestId), promoted to a column.';
COMMENT ON COLUMN payments.is_template_checkout IS 'Mongo metadata.isTemplateCheckout, promoted to a column.';

-- One pending incoming Request Network payment per RN request: the webhook
-- idempotency guard.
CREATE UNIQUE INDEX payments_rn_pending_in_uq ON payments (rn_request_id)
    WHERE provider = 'request_network' AND direction = 'in' AND status = 'pending';
CREATE INDEX idx_payments_pr_status ON payments (purchase_request_id, status);
CREATE INDEX idx_payments_disputed ON payments (id) WHERE disputed = true;
CREATE INDEX payments_rn_request_idx ON payments (rn_request_id) WHERE rn_request_id IS NOT NULL;
CREATE INDEX payments_tx_hash_idx ON payments (tx_hash) WHERE tx_hash IS NOT NULL;
CREATE INDEX payments_buyer_idx ON payments (buyer_id) WHERE buyer_id IS NOT NULL;
CREATE INDEX payments_seller_idx ON payments (seller_id) WHERE seller_id IS NOT NULL;
CREATE INDEX payments_seller_offer_idx ON payments (seller_offer_id) WHERE seller_offer_id IS NOT NULL;

CREATE TABLE payment_quotes (
    id                  uuid PRIMARY KEY,
    payment_id          uuid,
    purchase_request_id uuid,
    seller_offer_id     uuid,
    offer_amount        numeric(38,18) NOT NULL,
    offer_currency      offer_currency NOT NULL,
    settle_currency     text NOT NULL,
    chain_id            bigint,
    token_address       text,
    token_decimals      smallint CHECK (token_decimals IS NULL OR token_decimals BETWEEN 0 AND 36),
    fx_rate             numeric(38,18) NOT NULL,
    token_price_usd     numeric(38,18) NOT NULL,
    raw_settle_amount   numeric(38,18) NOT NULL,
    settle_amount       numeric(38,18) NOT NULL,
    expires_at          timestamptz,
    consumed_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_pq_pos CHECK (offer_amount > 0 AND fx_rate > 0 AND token_price_usd > 0),
    CONSTRAINT ck_pq_raw_settle_pos CHECK (raw_settle_amount > 0),
    CONSTRAINT ck_pq_settle CHECK (settle_amount >= raw_settle_amount)
);
CREATE INDEX payment_quotes_payment_idx ON payment_quotes (payment_id) WHERE payment_id IS NOT NULL;
CREATE INDEX payment_quotes_offer_idx ON payment_quotes (seller_offer_id) WHERE seller_offer_id IS NOT NULL;
CREATE INDEX payment_quotes_pr_idx ON payment_quotes (purchase_request_id) WHERE purchase_request_id IS NOT NULL;

-- +goose Down
DROP TABLE payment_quotes;
DROP TABLE payments;
