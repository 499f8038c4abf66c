-- 00004 users_categories: the parents everything else points at (Tier A).
--
-- Addresses:
--   HIGH "users: no CHECK (points_available >= 0 AND points_available <=
--     points_total)" and punch-list row "users | CHECK points"
--     (ck_users_points, with points_used and points_total non-negative too).
--   Backfill HIGH "users.email NOT NULL fails for OAuth-only users": email is
--     nullable; uniqueness applies to the emails that exist.
--   Medium "dual unique indexes on categories.name (drop raw, keep partial
--     WHERE is_active)": only the partial unique index exists.
--   The FKs users.referred_by_id (ON DELETE SET NULL) and
--     categories.parent_id are added in 00011 (NOT VALID) and validated in
--     00012; the trigram search index on users is in 00013.
--
-- Conventions for every application table from here on:
--   * id uuid PRIMARY KEY without a default: ids are minted through id_map
--     (by the replicator, or by the app's dual-write), never invented by a
--     column default that would bypass it.
--   * money numeric(38,18), on-chain base units (wei) numeric(78,0); never
--     real/double precision.
--   * Indexes on these new, empty tables are created plainly inside the
--     migration's transaction: CREATE INDEX CONCURRENTLY buys nothing on an
--     empty table and cannot run in a transaction. Indexes added later to
--     populated tables run without a transaction, CONCURRENTLY (00013).
--   * Points are numeric(38,18) as well: they are earned as a share of spend
--     and can be fractional; bigint would reject, float would round.

-- +goose Up
CREATE TABLE users (
    id                uuid PRIMARY KEY,
    email             text,
    first_name        text,
    last_name         text,
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
    points_available  numeric(38,18) NOT NULL DEFAULT 0,
    points_used       numeric(38,18) NOT NULL DEFAULT 0,
    points_total      numeric(38,18) NOT NULL DEFAULT 0,
    level             int,
    profile           jsonb,
    settings          jsonb,
    last_login_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_users_points CHECK (
        points_available >= 0 AND points_used >= 0 AND points_total >= 0
        AND points_available <= points_total)
);
CREATE UNIQUE INDEX users_email_uq ON users (email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX users_telegram_id_uq ON users (telegram_id) WHERE telegram_id IS NOT NULL;
CREATE UNIQUE INDEX users_referral_code_uq ON users (referral_code) WHERE referral_code IS NOT NULL;
-- Referral leaderboard / getReferrals (CR-18) joins on the referrer.
CREATE INDEX users_referred_by_idx ON users (referred_by_id) WHERE referred_by_id IS NOT NULL;

CREATE TABLE categories (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    slug        text,
    description text,
    parent_id   uuid,
    icon        text,
    image_url   text,
    sort_order  int NOT NULL DEFAULT 0,
    is_active   boolean NOT NULL DEFAULT true,
    metadata    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_categories_not_own_parent CHECK (parent_id IS DISTINCT FROM id)
);
-- Names are unique among active categories only (the partial index the
-- audit keeps; the raw unique index on name is not created).
CREATE UNIQUE INDEX categories_name_active_uq ON categories (name) WHERE is_active;
CREATE INDEX categories_parent_idx ON categories (parent_id) WHERE parent_id IS NOT NULL;

-- +goose Down
DROP TABLE categories;
DROP TABLE users;
