-- 00009 points: the points ledger of users.
--
-- Addresses:
--   HIGH / punch-list row "point_transactions | CHECK balance"
--     (ck_pt_balance: balance >= 0; balance is the user's balance after the
--     transaction).
--   Backfill "String() decimals" in backfill-pointTransactions.ts: amount and
--     balance are exact numeric(38,18) (see 00004 on fractional points).
--   CR-18 (referral leaderboard N+1): (referred_user_id) and
--     (user_id, created_at) indexes serve the single-CTE rewrite.
--   The FKs point_transactions.user_id and referred_user_id (and
--     purchase_request_id, the "order" of audit 003) come in 00011 / 00012.
-- The sign of amount follows the type (spent is negative); zero is refused.

-- +goose Up
CREATE TABLE point_transactions (
    id                  uuid PRIMARY KEY,
    user_id             uuid NOT NULL,
    type                point_transaction_type NOT NULL,
    amount              numeric(38,18) NOT NULL,
    balance             numeric(38,18) NOT NULL,
    referred_user_id    uuid,
    purchase_request_id uuid,
    description         text,
    metadata            jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_pt_balance CHECK (balance >= 0),
    CONSTRAINT ck_pt_amount_nonzero CHECK (amount <> 0)
);
CREATE INDEX point_transactions_user_created_idx ON point_transactions (user_id, created_at DESC);
CREATE INDEX point_transactions_referred_user_idx ON point_transactions (referred_user_id) WHERE referred_user_id IS NOT NULL;
CREATE INDEX point_transactions_pr_idx ON point_transactions (purchase_request_id) WHERE purchase_request_id IS NOT NULL;

-- +goose Down
DROP TABLE point_transactions;
