-- 00008 wallets: derived deposit destinations and their sweeps, Trezor
-- accounts and their derived addresses (Tier C).
--
-- Addresses:
--   Medium backfill "derivedDestinations.lastKnownBalance via JS Number loses
--     precision above 2^53 for wei": balances and sweep amounts in on-chain
--     base units are numeric(78,0) (enough for any uint256).
--   CR-5 (schema-less fallback -> all fields undefined): the columns a
--     destination cannot exist without (address, chain_id) are NOT NULL, so a
--     document that lost them is refused, not stored empty.
--   Punch-list rows "derived_destinations (address, chain_id)" and
--     "trezor_derived_addresses.address" indexes; workflow audit (003) line
--     127 "derived-destination uniqueness": (address, chain_id) is unique,
--     one destination per address on a chain. Plain CREATE INDEX: new, empty
--     tables (see 00004).
--   The FKs derived_destinations.buyer_id/seller_id/seller_offer_id,
--     derived_destination_sweeps.destination_id, trezor_accounts.user_id,
--     trezor_derived_addresses.trezor_account_id and .payment_id (the
--     "TrezorAccount addresses[].paymentId" of audit 003) come in 00011 /
--     00012.
--
-- trezor_derived_addresses is the TrezorAccount document's addresses[]
-- array: keyed by (trezor_account_id, ordinal) and rewritten whole from each
-- version of the account, like the other embedded arrays (see 00005).
-- Sweeps are money movements with their own identity: own uuid.

-- +goose Up
CREATE TABLE derived_destinations (
    id                 uuid PRIMARY KEY,
    buyer_id           uuid,
    seller_id          uuid,
    seller_offer_id    uuid,
    address            text NOT NULL,
    chain_id           bigint NOT NULL,
    derivation_path    text,
    derivation_index   bigint CHECK (derivation_index IS NULL OR derivation_index >= 0),
    token_address      text,
    currency           text,
    expected_amount    numeric(38,18),
    last_known_balance numeric(78,0),
    status             text NOT NULL DEFAULT 'active',
    last_checked_at    timestamptz,
    funded_at          timestamptz,
    swept_at           timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_dd_balance_nonneg CHECK (last_known_balance IS NULL OR last_known_balance >= 0),
    CONSTRAINT ck_dd_expected_pos CHECK (expected_amount IS NULL OR expected_amount > 0)
);
COMMENT ON COLUMN derived_destinations.last_known_balance IS 'On-chain balance in base units (wei); exact, never a JS Number.';
CREATE UNIQUE INDEX idx_dd_addr_chain ON derived_destinations (address, chain_id);
CREATE INDEX derived_destinations_offer_idx ON derived_destinations (seller_offer_id) WHERE seller_offer_id IS NOT NULL;
CREATE INDEX derived_destinations_buyer_idx ON derived_destinations (buyer_id) WHERE buyer_id IS NOT NULL;
CREATE INDEX derived_destinations_seller_idx ON derived_destinations (seller_id) WHERE seller_id IS NOT NULL;

CREATE TABLE derived_destination_sweeps (
    id             uuid PRIMARY KEY,
    destination_id uuid NOT NULL,
    amount         numeric(78,0) NOT NULL,
    token_address  text,
    to_address     text,
    tx_hash        text,
    status         sweep_status NOT NULL DEFAULT 'pending',
    gas_used       numeric(78,0),
    gas_price      numeric(78,0),
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    confirmed_at   timestamptz,
    CONSTRAINT ck_dds_amount_pos CHECK (amount > 0)
);
COMMENT ON COLUMN derived_destination_sweeps.amount IS 'Swept amount in base units (wei).';
CREATE INDEX derived_destination_sweeps_destination_idx ON derived_destination_sweeps (destination_id, created_at);
CREATE INDEX derived_destination_sweeps_tx_idx ON derived_destination_sweeps (tx_hash) WHERE tx_hash IS NOT NULL;

CREATE TABLE trezor_accounts (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL,
    label              text,
    coin               text,
    chain_id           bigint,
    xpub               text NOT NULL,
    account_index      int CHECK (account_index IS NULL OR account_index >= 0),
    derivation_path    text,
    next_address_index int NOT NULL DEFAULT 0 CHECK (next_address_index >= 0),
    is_active          boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trezor_accounts_user_idx ON trezor_accounts (user_id);

CREATE TABLE trezor_derived_addresses (
    trezor_account_id uuid NOT NULL,
    ordinal           int NOT NULL CHECK (ordinal >= 0),
    address           text NOT NULL,
    derivation_index  int CHECK (derivation_index IS NULL OR derivation_index >= 0),
    derivation_path   text,
    payment_id        uuid,
    used_at           timestamptz,
    created_at        timestamptz,
    PRIMARY KEY (trezor_account_id, ordinal)
);
CREATE INDEX idx_tda_address ON trezor_derived_addresses (address);
CREATE INDEX trezor_derived_addresses_payment_idx ON trezor_derived_addresses (payment_id) WHERE payment_id IS NOT NULL;

-- +goose Down
DROP TABLE trezor_derived_addresses;
DROP TABLE trezor_accounts;
DROP TABLE derived_destination_sweeps;
DROP TABLE derived_destinations;
