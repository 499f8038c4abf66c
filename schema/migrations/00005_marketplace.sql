-- 00005 marketplace: request templates, purchase requests with their child
-- tables, delivery attempts and seller offers (Tier B).
--
-- Addresses:
--   HIGH "seller_offers.price_amount numeric(18,8) vs project-wide
--     numeric(38,18)": numeric(38,18).
--   Backfill HIGH "String(number) for numeric columns risks scientific
--     notation" (budget, price.amount, proposal.price): the columns are exact
--     numeric; the sink sends decimal text, never floats.
--   Medium "request_templates no CHECK (usage_count <= max_usage)"
--     (ck_rt_usage; max_usage NULL = unlimited) - the oversold-template
--     case of batchConvertTemplates.
--   HIGH "purchase_request_preferred_sellers: no composite PK, only
--     uniqueIndex": PRIMARY KEY (purchase_request_id, seller_id).
--   Punch list: purchase_requests (status, created_at DESC) and GIN (tags);
--     seller_offers (seller_id, status) and (purchase_request_id, status).
--     Plain CREATE INDEX: these tables are new and empty (see 00004).
--   The FKs of "Schema - Missing Physical FKs" (purchase_requests.buyer_id,
--     category_id, selected_offer_id; every PR child table; delivery_attempts
--     .delivery_info_id, seller_id) are added in 00011 NOT VALID and
--     validated in 00012.
--
-- Child tables of a purchase request (Mongo embeds them in the document):
--   * 1:1 embedded objects with nothing pointing at them
--     (_seller_delivery_info, _service_info) are keyed by the parent:
--     purchase_request_id is the primary key. No identity of their own is
--     needed and none has to be minted.
--   * purchase_request_delivery_info is 1:1 too, but delivery_attempts and
--     the delivery address point at it, so it has its own id; the replicator
--     uses the purchase request's uuid as that id (no id_map row needed), and
--     UNIQUE (purchase_request_id) keeps it 1:1. _delivery_address is keyed
--     by delivery_info_id for the same reason as above.
--   * Arrays of plain values (_specifications) are keyed by
--     (purchase_request_id, ordinal): the sink rewrites the whole array from
--     each new version of the parent document.
--   * _preferred_sellers is a set of users: (purchase_request_id, seller_id).
--   * delivery_attempts are Mongoose subdocuments with their own ObjectId:
--     own uuid, minted through id_map from the subdocument's _id.

-- +goose Up
CREATE TABLE request_templates (
    id                     uuid PRIMARY KEY,
    seller_id              uuid NOT NULL,
    category_id            uuid,
    title                  text NOT NULL,
    description            text,
    link                   text,
    budget                 numeric(38,18),
    budget_currency        offer_currency,
    proposal_price         numeric(38,18),
    proposal_currency      offer_currency,
    proposal_delivery_days int,
    proposal_message       text,
    tags                   text[] NOT NULL DEFAULT '{}',
    images                 text[] NOT NULL DEFAULT '{}',
    specifications         jsonb,
    usage_count            int NOT NULL DEFAULT 0,
    max_usage              int,
    is_active              boolean NOT NULL DEFAULT true,
    expires_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_rt_budget_nonneg CHECK (budget IS NULL OR budget >= 0),
    CONSTRAINT ck_rt_proposal_price_pos CHECK (proposal_price IS NULL OR proposal_price > 0),
    CONSTRAINT ck_rt_delivery_days CHECK (proposal_delivery_days IS NULL OR proposal_delivery_days >= 0),
    CONSTRAINT ck_rt_usage CHECK (
        usage_count >= 0
        AND (max_usage IS NULL OR (max_usage >= 0 AND usage_count <= max_usage)))
);
-- Checkout resolves carts by template link (batchConvertTemplates).
CREATE UNIQUE INDEX request_templates_link_uq ON request_templates (link) WHERE link IS NOT NULL;
CREATE INDEX request_templates_seller_idx ON request_templates (seller_id, is_active);
CREATE INDEX request_templates_category_idx ON request_templates (category_id) WHERE category_id IS NOT NULL;

CREATE TABLE purchase_requests (
    id                uuid PRIMARY KEY,
    buyer_id          uuid NOT NULL,
    category_id       uuid,
    selected_offer_id uuid,
    template_id       uuid,
    title             text NOT NULL,
    description       text,
    budget            numeric(38,18),
    budget_currency   offer_currency,
    quantity          int NOT NULL DEFAULT 1,
    status            purchase_request_status NOT NULL DEFAULT 'active',
    -- Nullable: the audit found Mongo documents without it ("escrow_state ??
    -- null may hit NOT NULL"); NULL is stored as NULL, never guessed.
    escrow_state      escrow_state,
    is_service        boolean NOT NULL DEFAULT false,
    release_blocked   boolean NOT NULL DEFAULT false,
    tags              text[] NOT NULL DEFAULT '{}',
    images            text[] NOT NULL DEFAULT '{}',
    deadline          timestamptz,
    metadata          jsonb,
    completed_at      timestamptz,
    cancelled_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_pr_budget_nonneg CHECK (budget IS NULL OR budget >= 0),
    CONSTRAINT ck_pr_quantity_pos CHECK (quantity > 0)
);
CREATE INDEX idx_pr_status_created ON purchase_requests (status, created_at DESC);
CREATE INDEX idx_pr_tags ON purchase_requests USING GIN (tags);
CREATE INDEX purchase_requests_buyer_idx ON purchase_requests (buyer_id, created_at DESC);
CREATE INDEX purchase_requests_category_idx ON purchase_requests (category_id) WHERE category_id IS NOT NULL;
CREATE INDEX purchase_requests_selected_offer_idx ON purchase_requests (selected_offer_id) WHERE selected_offer_id IS NOT NULL;
CREATE INDEX purchase_requests_template_idx ON purchase_requests (template_id) WHERE template_id IS NOT NULL;

CREATE TABLE purchase_request_delivery_info (
    id                    uuid PRIMARY KEY,
    purchase_request_id   uuid NOT NULL,
    method                text,
    status                delivery_status NOT NULL DEFAULT 'pending',
    carrier               text,
    tracking_number       text,
    estimated_delivery_at timestamptz,
    shipped_at            timestamptz,
    delivered_at          timestamptz,
    notes                 text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT purchase_request_delivery_info_pr_uq UNIQUE (purchase_request_id)
);

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
    shipped_at            timestamptz,
    estimated_delivery_at timestamptz,
    proof_urls            text[] NOT NULL DEFAULT '{}',
    notes                 text,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE purchase_request_service_info (
    purchase_request_id uuid PRIMARY KEY,
    service_type        text,
    location            text,
    is_remote           boolean,
    scheduled_at        timestamptz,
    duration_minutes    int CHECK (duration_minutes IS NULL OR duration_minutes >= 0),
    requirements        text,
    notes               text
);

CREATE TABLE purchase_request_specifications (
    purchase_request_id uuid NOT NULL,
    ordinal             int NOT NULL CHECK (ordinal >= 0),
    name                text NOT NULL,
    value               text,
    PRIMARY KEY (purchase_request_id, ordinal)
);

CREATE TABLE purchase_request_preferred_sellers (
    purchase_request_id uuid NOT NULL,
    seller_id           uuid NOT NULL,
    PRIMARY KEY (purchase_request_id, seller_id)
);
CREATE INDEX purchase_request_preferred_sellers_seller_idx ON purchase_request_preferred_sellers (seller_id);

CREATE TABLE delivery_attempts (
    id               uuid PRIMARY KEY,
    delivery_info_id uuid NOT NULL,
    seller_id        uuid,
    attempt_number   int NOT NULL CHECK (attempt_number > 0),
    status           delivery_status NOT NULL,
    attempted_at     timestamptz NOT NULL,
    carrier          text,
    tracking_number  text,
    failure_reason   text,
    notes            text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_info_idx ON delivery_attempts (delivery_info_id, attempt_number);
CREATE INDEX delivery_attempts_seller_idx ON delivery_attempts (seller_id) WHERE seller_id IS NOT NULL;

CREATE TABLE seller_offers (
    id                 uuid PRIMARY KEY,
    purchase_request_id uuid NOT NULL,
    seller_id          uuid NOT NULL,
    template_id        uuid,
    price_amount       numeric(38,18) NOT NULL,
    price_currency     offer_currency NOT NULL,
    delivery_days      int,
    message            text,
    status             seller_offer_status NOT NULL DEFAULT 'pending',
    expires_at         timestamptz,
    accepted_at        timestamptz,
    rejected_at        timestamptz,
    withdrawn_at       timestamptz,
    metadata           jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_so_price_pos CHECK (price_amount > 0),
    CONSTRAINT ck_so_delivery_days CHECK (delivery_days IS NULL OR delivery_days >= 0)
);
CREATE INDEX idx_so_seller_status ON seller_offers (seller_id, status);
CREATE INDEX idx_so_pr_status ON seller_offers (purchase_request_id, status);
CREATE INDEX seller_offers_template_idx ON seller_offers (template_id) WHERE template_id IS NOT NULL;

-- +goose Down
DROP TABLE seller_offers;
DROP TABLE delivery_attempts;
DROP TABLE purchase_request_preferred_sellers;
DROP TABLE purchase_request_specifications;
DROP TABLE purchase_request_service_info;
DROP TABLE purchase_request_seller_delivery_info;
DROP TABLE purchase_request_delivery_address;
DROP TABLE purchase_request_delivery_info;
DROP TABLE purchase_requests;
DROP TABLE request_templates;
