-- The escrow application's own PostgreSQL schema, as its 18 Drizzle
-- migrations (0000-0017) left it, with the defects the audit
-- (shared/seeds, "DB Migration Audit Report") lists. TestAdoptAppSchema
-- adopts it. Built from the audit's findings:
--
--   * no CHECK constraint anywhere (payments amount, payment_quotes money
--     fields and snap-up, users points, point_transactions balance,
--     request_templates usage, ledger amount);
--   * seller_offers.price_amount numeric(18,8) (HIGH: "vs project-wide
--     numeric(38,18)");
--   * id_map without a primary key and new_id without a unique constraint
--     (and without created_at, which the dual-write never wrote);
--   * purchase_request_preferred_sellers: no composite PK, only a
--     uniqueIndex;
--   * every foreign key declared in relations() only: none exists;
--   * the punch list's indexes missing (payments (purchase_request_id,
--     status), disputed partial, seller_offers (seller_id, status),
--     derived_destinations (address, chain_id), trezor_derived_addresses
--     .address, the trigram search indexes, purchase_requests tags GIN);
--   * dual unique indexes on categories.name (raw and partial);
--   * the ledger immutability trigger row-level only, its function
--     unaware of TRUNCATE, and not ENABLE ALWAYS;
--   * enums short of values the Mongoose models use (payment_status,
--     ledger_entry_type), wallet_type created and used by no column;
--   * users.email NOT NULL (Backfill HIGH: fails for OAuth-only users) and
--     varchar(255) from Drizzle's varchar();
--   * nullable columns the migrations make NOT NULL
--     (purchase_request_preferred_sellers, the ledger's currency);
--   * trezor_derived_addresses missing (addresses[] kept as jsonb in
--     trezor_accounts, an extra column the adoption leaves alone);
--   * tables outside the replicator's scope (disputes with text foreign
--     keys), which the adoption leaves alone.
-- And some rows, so that validating the new constraints scans real data.

CREATE TYPE payment_provider AS ENUM ('request_network', 'trezor', 'derived_destination', 'direct_transfer', 'manual');
CREATE TYPE payment_direction AS ENUM ('in', 'out');
CREATE TYPE payment_status AS ENUM ('pending', 'processing', 'completed', 'failed', 'cancelled', 'refunded');
CREATE TYPE escrow_state AS ENUM ('none', 'pending', 'funded', 'held', 'disputed', 'released', 'refunded', 'partially_refunded', 'cancelled');
CREATE TYPE ledger_entry_type AS ENUM ('deposit', 'hold', 'release', 'refund', 'fee');
CREATE TYPE purchase_request_status AS ENUM ('draft', 'active', 'pending_payment', 'paid', 'in_progress', 'shipped',
    'delivered', 'completed', 'cancelled', 'disputed', 'expired', 'closed');
CREATE TYPE seller_offer_status AS ENUM ('pending', 'accepted', 'rejected', 'withdrawn', 'expired', 'cancelled', 'completed');
CREATE TYPE offer_currency AS ENUM ('USD', 'EUR', 'GBP', 'RUB', 'KZT', 'USDT', 'USDC', 'DAI', 'ETH', 'BTC', 'TON');
-- 0011: ALTER TYPE offer_currency ADD VALUE 'TRY' (Medium: PG 12+ in a transaction).
ALTER TYPE offer_currency ADD VALUE 'TRY';
CREATE TYPE point_transaction_type AS ENUM ('earned', 'spent', 'purchase', 'sale', 'referral', 'referral_bonus',
    'bonus', 'refund', 'adjustment', 'expired');
CREATE TYPE delivery_status AS ENUM ('pending', 'preparing', 'shipped', 'in_transit', 'out_for_delivery',
    'delivered', 'failed', 'returned', 'cancelled');
CREATE TYPE sweep_status AS ENUM ('pending', 'submitted', 'confirmed', 'failed');
-- Medium: "wallet_type enum created but used in no column (dead DDL)".
CREATE TYPE wallet_type AS ENUM ('hot', 'cold');

CREATE TABLE users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             varchar(255) NOT NULL,
    first_name        varchar(255),
    last_name         varchar(255),
    username          text,
    phone             text,
    telegram_id       bigint,
    telegram_username text,
    role              text NOT NULL DEFAULT 'user',
    avatar_url        text,
    wallet_address    text,
    is_verified       boolean NOT NULL DEFAULT false,
    is_active         boolean NOT NULL DEFAULT true,
    is_banned         boolean NOT NULL DEFAULT false,
    referral_code     text,
    referred_by_id    uuid,
    points_available  numeric(38,18) NOT NULL DEFAULT '0',
    points_used       numeric(38,18) NOT NULL DEFAULT '0',
    points_total      numeric(38,18) NOT NULL DEFAULT '0',
    level             integer,
    profile           jsonb,
    settings          jsonb,
    last_login_at     timestamp with time zone,
    created_at        timestamp with time zone NOT NULL DEFAULT now(),
    updated_at        timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT users_email_unique UNIQUE (email),
    CONSTRAINT users_referral_code_unique UNIQUE (referral_code)
);
CREATE UNIQUE INDEX users_telegram_id_idx ON users (telegram_id) WHERE telegram_id IS NOT NULL;

CREATE TABLE categories (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    slug        text,
    description text,
    parent_id   uuid,
    icon        text,
    image_url   text,
    sort_order  integer NOT NULL DEFAULT 0,
    is_active   boolean NOT NULL DEFAULT true,
    metadata    jsonb,
    created_at  timestamp with time zone NOT NULL DEFAULT now(),
    updated_at  timestamp with time zone NOT NULL DEFAULT now()
);
-- Medium: dual unique indexes on categories.name.
CREATE UNIQUE INDEX categories_name_unique ON categories (name);
CREATE UNIQUE INDEX categories_name_active_idx ON categories (name) WHERE is_active;

CREATE TABLE request_templates (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seller_id              uuid NOT NULL,
    category_id            uuid,
    title                  text NOT NULL,
    description            text,
    link                   text,
    budget                 numeric(38,18),
    budget_currency        offer_currency,
    proposal_price         numeric(38,18),
    proposal_currency      offer_currency,
    proposal_delivery_days integer,
    proposal_message       text,
    tags                   text[] NOT NULL DEFAULT '{}',
    images                 text[] NOT NULL DEFAULT '{}',
    specifications         jsonb,
    usage_count            integer NOT NULL DEFAULT 0,
    max_usage              integer,
    is_active              boolean NOT NULL DEFAULT true,
    expires_at             timestamp with time zone,
    created_at             timestamp with time zone NOT NULL DEFAULT now(),
    updated_at             timestamp with time zone NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX request_templates_link_idx ON request_templates (link) WHERE link IS NOT NULL;

CREATE TABLE purchase_requests (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    buyer_id          uuid NOT NULL,
    category_id       uuid,
    selected_offer_id uuid,
    template_id       uuid,
    title             text NOT NULL,
    description       text,
    budget            numeric(38,18),
    budget_currency   offer_currency,
    quantity          integer NOT NULL DEFAULT 1,
    status            purchase_request_status NOT NULL DEFAULT 'active',
    escrow_state      escrow_state,
    is_service        boolean NOT NULL DEFAULT false,
    release_blocked   boolean NOT NULL DEFAULT false,
    tags              text[] NOT NULL DEFAULT '{}',
    images            text[] NOT NULL DEFAULT '{}',
    deadline          timestamp with time zone,
    metadata          jsonb,
    completed_at      timestamp with time zone,
    cancelled_at      timestamp with time zone,
    created_at        timestamp with time zone NOT NULL DEFAULT now(),
    updated_at        timestamp with time zone NOT NULL DEFAULT now()
);
CREATE INDEX pr_buyer_id_idx ON purchase_requests (buyer_id);

CREATE TABLE purchase_request_delivery_info (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    purchase_request_id   uuid NOT NULL,
    method                text,
    status                delivery_status NOT NULL DEFAULT 'pending',
    carrier               text,
    tracking_number       text,
    estimated_delivery_at timestamp with time zone,
    shipped_at            timestamp with time zone,
    delivered_at          timestamp with time zone,
    notes                 text,
    created_at            timestamp with time zone NOT NULL DEFAULT now(),
    updated_at            timestamp with time zone NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX prdi_purchase_request_idx ON purchase_request_delivery_info (purchase_request_id);

CREATE TABLE purchase_request_delivery_address (
    delivery_info_id uuid PRIMARY KEY,
    full_name        text,
    phone            text,
    country          text,
    region           text,
    city             text,
    street           text,
    building         text,
    apartment        text,
    postal_code      text,
    notes            text
);

CREATE TABLE purchase_request_seller_delivery_info (
    purchase_request_id   uuid PRIMARY KEY,
    method                text,
    carrier               text,
    tracking_number       text,
    shipped_at            timestamp with time zone,
    estimated_delivery_at timestamp with time zone,
    proof_urls            text[] NOT NULL DEFAULT '{}',
    notes                 text,
    updated_at            timestamp with time zone NOT NULL DEFAULT now()
);

CREATE TABLE purchase_request_service_info (
    purchase_request_id uuid PRIMARY KEY,
    service_type        text,
    location            text,
    is_remote           boolean,
    scheduled_at        timestamp with time zone,
    duration_minutes    integer,
    requirements        text,
    notes               text
);

CREATE TABLE purchase_request_specifications (
    purchase_request_id uuid NOT NULL,
    ordinal             integer NOT NULL,
    name                text NOT NULL,
    value               text,
    PRIMARY KEY (purchase_request_id, ordinal)
);

-- HIGH: no composite PK, only a uniqueIndex (and Drizzle's columns
-- nullable without .notNull()).
CREATE TABLE purchase_request_preferred_sellers (
    purchase_request_id uuid,
    seller_id           uuid
);
CREATE UNIQUE INDEX prps_pr_seller_idx ON purchase_request_preferred_sellers (purchase_request_id, seller_id);

CREATE TABLE delivery_attempts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    delivery_info_id uuid NOT NULL,
    seller_id        uuid,
    attempt_number   integer NOT NULL,
    status           delivery_status NOT NULL,
    attempted_at     timestamp with time zone NOT NULL,
    carrier          text,
    tracking_number  text,
    failure_reason   text,
    notes            text,
    created_at       timestamp with time zone NOT NULL DEFAULT now()
);

-- HIGH: price_amount numeric(18,8).
CREATE TABLE seller_offers (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    purchase_request_id uuid NOT NULL,
    seller_id           uuid NOT NULL,
    template_id         uuid,
    price_amount        numeric(18,8) NOT NULL,
    price_currency      offer_currency NOT NULL,
    delivery_days       integer,
    message             text,
    status              seller_offer_status NOT NULL DEFAULT 'pending',
    expires_at          timestamp with time zone,
    accepted_at         timestamp with time zone,
    rejected_at         timestamp with time zone,
    withdrawn_at        timestamp with time zone,
    metadata            jsonb,
    created_at          timestamp with time zone NOT NULL DEFAULT now(),
    updated_at          timestamp with time zone NOT NULL DEFAULT now()
);

CREATE TABLE payments (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    purchase_request_id  uuid,
    seller_offer_id      uuid,
    buyer_id             uuid,
    seller_id            uuid,
    provider             payment_provider NOT NULL DEFAULT 'request_network',
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
    paid_at              timestamp with time zone,
    completed_at         timestamp with time zone,
    refunded_at          timestamp with time zone,
    cancelled_at         timestamp with time zone,
    created_at           timestamp with time zone NOT NULL DEFAULT now(),
    updated_at           timestamp with time zone NOT NULL DEFAULT now()
);
CREATE INDEX payments_tx_hash_idx ON payments (tx_hash) WHERE tx_hash IS NOT NULL;

CREATE TABLE payment_quotes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id          uuid,
    purchase_request_id uuid,
    seller_offer_id     uuid,
    offer_amount        numeric(38,18) NOT NULL,
    offer_currency      offer_currency NOT NULL,
    settle_currency     text NOT NULL,
    chain_id            bigint,
    token_address       text,
    token_decimals      smallint,
    fx_rate             numeric(38,18) NOT NULL,
    token_price_usd     numeric(38,18) NOT NULL,
    raw_settle_amount   numeric(38,18) NOT NULL,
    settle_amount       numeric(38,18) NOT NULL,
    expires_at          timestamp with time zone,
    consumed_at         timestamp with time zone,
    created_at          timestamp with time zone NOT NULL DEFAULT now()
);

CREATE TABLE funds_ledger_entries (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    entry_type          ledger_entry_type NOT NULL,
    amount              numeric(38,18) NOT NULL,
    currency            text,
    purchase_request_id uuid,
    payment_id          uuid,
    user_id             uuid,
    escrow_state        escrow_state,
    idempotency_key     text,
    description         text,
    metadata            jsonb,
    created_at          timestamp with time zone NOT NULL DEFAULT now()
);
-- Workflow audit: the ledger's sparse-unique idempotency key.
CREATE UNIQUE INDEX fle_idempotency_key_idx ON funds_ledger_entries (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- ledgerImmutability: row-level only (TRUNCATE bypasses it), a function
-- that knows only rows, and an ordinary ENABLE (off under
-- session_replication_role = replica).
CREATE FUNCTION funds_ledger_immutable_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'funds_ledger_entries rows are immutable (%)', OLD.id;
END
$$;
CREATE TRIGGER funds_ledger_no_update_delete BEFORE UPDATE OR DELETE ON funds_ledger_entries
    FOR EACH ROW EXECUTE FUNCTION funds_ledger_immutable_fn();

CREATE TABLE derived_destinations (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    buyer_id           uuid,
    seller_id          uuid,
    seller_offer_id    uuid,
    address            text NOT NULL,
    chain_id           bigint NOT NULL,
    derivation_path    text,
    derivation_index   bigint,
    token_address      text,
    currency           text,
    expected_amount    numeric(38,18),
    last_known_balance numeric(78,0),
    status             text NOT NULL DEFAULT 'active',
    last_checked_at    timestamp with time zone,
    funded_at          timestamp with time zone,
    swept_at           timestamp with time zone,
    created_at         timestamp with time zone NOT NULL DEFAULT now(),
    updated_at         timestamp with time zone NOT NULL DEFAULT now()
);

CREATE TABLE derived_destination_sweeps (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    destination_id uuid NOT NULL,
    amount         numeric(78,0) NOT NULL,
    token_address  text,
    to_address     text,
    tx_hash        text,
    status         sweep_status NOT NULL DEFAULT 'pending',
    gas_used       numeric(78,0),
    gas_price      numeric(78,0),
    error          text,
    created_at     timestamp with time zone NOT NULL DEFAULT now(),
    confirmed_at   timestamp with time zone
);

CREATE TABLE trezor_accounts (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL,
    label              text,
    coin               text,
    chain_id           bigint,
    xpub               text NOT NULL,
    account_index      integer,
    derivation_path    text,
    next_address_index integer NOT NULL DEFAULT 0,
    is_active          boolean NOT NULL DEFAULT true,
    addresses          jsonb,
    created_at         timestamp with time zone NOT NULL DEFAULT now(),
    updated_at         timestamp with time zone NOT NULL DEFAULT now()
);

-- TrezorAccount.addresses[] stayed a jsonb column of trezor_accounts:
-- trezor_derived_addresses does not exist.

CREATE TABLE point_transactions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL,
    type                point_transaction_type NOT NULL,
    amount              numeric(38,18) NOT NULL,
    balance             numeric(38,18) NOT NULL,
    referred_user_id    uuid,
    purchase_request_id uuid,
    description         text,
    metadata            jsonb,
    created_at          timestamp with time zone NOT NULL DEFAULT now()
);

-- Medium: "id_map no PK and new_id no unique constraint".
CREATE TABLE id_map (
    collection       text NOT NULL,
    legacy_object_id text NOT NULL,
    new_id           uuid NOT NULL
);

CREATE TABLE pg_dualwrite_gaps (
    id               bigserial PRIMARY KEY,
    collection       text NOT NULL,
    legacy_object_id text NOT NULL,
    operation        text NOT NULL,
    error            text,
    created_at       timestamp with time zone NOT NULL DEFAULT now(),
    resolved_at      timestamp with time zone
);

-- Outside the replicator's scope ("disputes/chats use text (not uuid) for
-- FK columns").
CREATE TABLE disputes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    purchase_request_id text NOT NULL,
    opened_by           text NOT NULL,
    reason              text,
    created_at          timestamp with time zone NOT NULL DEFAULT now()
);

-- Rows the dual-write wrote (every one satisfies the audit's constraints,
-- so validating them succeeds).
INSERT INTO users (id, email, first_name, points_available, points_used, points_total) VALUES
    ('0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001', 'buyer@example.kz', 'Aigerim', 10, 5, 15);
INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES
    ('users', '65f0000000000000000000a1', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001');
INSERT INTO categories (id, name) VALUES ('0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0002', 'Electronics');
INSERT INTO purchase_requests (id, buyer_id, category_id, title, budget, budget_currency) VALUES
    ('0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0003', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0002', 'A phone', 300, 'USD');
INSERT INTO seller_offers (id, purchase_request_id, seller_id, price_amount, price_currency) VALUES
    ('0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0004', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0003', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001', 290.12345678, 'USDT');
INSERT INTO payments (id, purchase_request_id, seller_offer_id, buyer_id, direction, amount, currency, rn_request_id) VALUES
    ('0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0005', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0003', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0004',
     '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001', 'in', 290.12345678, 'USDT', 'rn-1');
INSERT INTO funds_ledger_entries (id, entry_type, amount, currency, purchase_request_id, payment_id, idempotency_key) VALUES
    ('0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0006', 'deposit', 290.12345678, 'USDT', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0003',
     '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0005', 'pay-1:deposit');
INSERT INTO point_transactions (id, user_id, type, amount, balance) VALUES
    ('0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0007', '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001', 'earned', 15, 15);
INSERT INTO disputes (purchase_request_id, opened_by) VALUES ('0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0003', 'buyer');
