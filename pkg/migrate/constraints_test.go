package migrate_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Fixture ids. Every case runs in its own transaction, rolled back, on top of
// these committed rows.
const (
	buyerID    = "00000000-0000-4000-8000-000000000001"
	sellerID   = "00000000-0000-4000-8000-000000000002"
	categoryID = "00000000-0000-4000-8000-000000000003"
	prID       = "00000000-0000-4000-8000-000000000004"
	offerID    = "00000000-0000-4000-8000-000000000005"
	paymentID  = "00000000-0000-4000-8000-000000000006"
	ledgerID   = "00000000-0000-4000-8000-000000000007"
	missingID  = "00000000-0000-4000-8000-0000000000ff"
)

const fixtures = `
INSERT INTO users (id, email, points_available, points_total) VALUES
    ('` + buyerID + `', 'buyer@example.test', 10, 25),
    ('` + sellerID + `', 'seller@example.test', 0, 0);
INSERT INTO categories (id, name) VALUES ('` + categoryID + `', 'Electronics');
INSERT INTO purchase_requests (id, buyer_id, category_id, title, budget, budget_currency)
    VALUES ('` + prID + `', '` + buyerID + `', '` + categoryID + `', 'A phone', 300, 'USD');
INSERT INTO seller_offers (id, purchase_request_id, seller_id, price_amount, price_currency)
    VALUES ('` + offerID + `', '` + prID + `', '` + sellerID + `', 290.5, 'USDT');
INSERT INTO payments (id, purchase_request_id, seller_offer_id, buyer_id, seller_id, provider, direction, status, amount, currency, rn_request_id)
    VALUES ('` + paymentID + `', '` + prID + `', '` + offerID + `', '` + buyerID + `', '` + sellerID + `',
            'request_network', 'in', 'pending', 290.5, 'USDT', 'rn-1');
INSERT INTO funds_ledger_entries (id, entry_type, amount, currency, purchase_request_id, payment_id, idempotency_key)
    VALUES ('` + ledgerID + `', 'deposit', 290.5, 'USDT', '` + prID + `', '` + paymentID + `', 'pay-1:deposit');
INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES
    ('users', '65f0000000000000000000b1', '` + buyerID + `');
`

func fixtureDB(t *testing.T) *pgx.Conn {
	t.Helper()
	conn := connect(t, migrated(t))
	if _, err := conn.Exec(ctxT(t), fixtures); err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	return conn
}

// inTx runs sql in a transaction that is always rolled back and returns its
// error.
func inTx(t *testing.T, conn *pgx.Conn, sql string, args ...any) error {
	t.Helper()
	ctx := ctxT(t)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	_, err = tx.Exec(ctx, sql, args...)
	return err
}

// wantPgError checks that err is PostgreSQL's error code (and, when given,
// names constraint).
func wantPgError(t *testing.T, err error, code, constraint string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("want SQLSTATE %s (%s), got %v", code, constraint, err)
	}
	if pgErr.Code != code || (constraint != "" && pgErr.ConstraintName != constraint) {
		t.Fatalf("want SQLSTATE %s on %q, got %s on %q: %s", code, constraint, pgErr.Code, pgErr.ConstraintName, pgErr.Message)
	}
}

const (
	checkViolation   = "23514"
	notNullViolation = "23502"
	uniqueViolation  = "23505"
	fkViolation      = "23503"
	restrictViolate  = "23001"
	badEnumValue     = "22P02"
)

func TestConstraintsRefuseBadMoney(t *testing.T) {
	t.Parallel()
	conn := fixtureDB(t)
	insPayment := `INSERT INTO payments (id, provider, direction, amount, currency) VALUES (gen_random_uuid(), 'trezor', 'in', $1::numeric, 'USDT')`
	insQuote := `INSERT INTO payment_quotes (id, offer_amount, offer_currency, settle_currency, fx_rate, token_price_usd, raw_settle_amount, settle_amount)
		VALUES (gen_random_uuid(), $1::numeric, 'TRY', 'USDT', $2::numeric, $3::numeric, $4::numeric, $5::numeric)`
	refused := []struct {
		name, sql  string
		args       []any
		code, cons string
	}{
		{"payment amount zero", insPayment, []any{"0"}, checkViolation, "ck_payments_amount_pos"},
		{"payment amount negative", insPayment, []any{"-5"}, checkViolation, "ck_payments_amount_pos"},
		{"payment amount NULL", insPayment, []any{nil}, notNullViolation, ""},
		{"quote fx_rate zero", insQuote, []any{"100", "0", "1", "3", "3"}, checkViolation, "ck_pq_pos"},
		{"quote offer_amount zero", insQuote, []any{"0", "0.03", "1", "3", "3"}, checkViolation, "ck_pq_pos"},
		{"quote token_price_usd negative", insQuote, []any{"100", "0.03", "-1", "3", "3"}, checkViolation, "ck_pq_pos"},
		{"quote settle below raw", insQuote, []any{"100", "0.03", "1", "3.000001", "3"}, checkViolation, "ck_pq_settle"},
		{"points available above total", `UPDATE users SET points_available = 26 WHERE id = '` + buyerID + `'`, nil, checkViolation, "ck_users_points"},
		{"points negative", `UPDATE users SET points_available = -1 WHERE id = '` + buyerID + `'`, nil, checkViolation, "ck_users_points"},
		{"points used negative", `UPDATE users SET points_used = -1 WHERE id = '` + buyerID + `'`, nil, checkViolation, "ck_users_points"},
		{"point balance negative", `INSERT INTO point_transactions (id, user_id, type, amount, balance)
			VALUES (gen_random_uuid(), '` + buyerID + `', 'spent', -5, -1)`, nil, checkViolation, "ck_pt_balance"},
		{"template used beyond max_usage", `INSERT INTO request_templates (id, seller_id, title, usage_count, max_usage)
			VALUES (gen_random_uuid(), '` + sellerID + `', 't', 6, 5)`, nil, checkViolation, "ck_rt_usage"},
		{"ledger amount zero", `INSERT INTO funds_ledger_entries (id, entry_type, amount, currency) VALUES (gen_random_uuid(), 'fee', 0, 'USDT')`, nil, checkViolation, "ck_fle_amount_pos"},
		{"ledger entry_type missing", `INSERT INTO funds_ledger_entries (id, amount, currency) VALUES (gen_random_uuid(), 1, 'USDT')`, nil, notNullViolation, ""},
		{"offer price zero", `INSERT INTO seller_offers (id, purchase_request_id, seller_id, price_amount, price_currency)
			VALUES (gen_random_uuid(), '` + prID + `', '` + sellerID + `', 0, 'USD')`, nil, checkViolation, "ck_so_price_pos"},
		{"wei balance negative", `INSERT INTO derived_destinations (id, address, chain_id, last_known_balance)
			VALUES (gen_random_uuid(), '0xabc', 1, -1)`, nil, checkViolation, "ck_dd_balance_nonneg"},
		{"unknown currency", `INSERT INTO seller_offers (id, purchase_request_id, seller_id, price_amount, price_currency)
			VALUES (gen_random_uuid(), '` + prID + `', '` + sellerID + `', 1, 'XXX')`, nil, badEnumValue, ""},
		{"legacy provider spelling", `INSERT INTO payments (id, provider, direction, amount, currency)
			VALUES (gen_random_uuid(), 'request.network', 'in', 1, 'USDT')`, nil, badEnumValue, ""},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			wantPgError(t, inTx(t, conn, c.sql, c.args...), c.code, c.cons)
		})
	}

	accepted := []struct {
		name, sql string
		args      []any
	}{
		{"smallest positive amount", insPayment, []any{"0.000000000000000001"}},
		{"settle equal to raw", insQuote, []any{"100", "0.03", "1", "3", "3"}},
		{"points available equal to total", `UPDATE users SET points_available = 25 WHERE id = '` + buyerID + `'`, nil},
		{"template at max_usage", `INSERT INTO request_templates (id, seller_id, title, usage_count, max_usage)
			VALUES (gen_random_uuid(), '` + sellerID + `', 't', 5, 5)`, nil},
		{"template without max_usage", `INSERT INTO request_templates (id, seller_id, title, usage_count)
			VALUES (gen_random_uuid(), '` + sellerID + `', 't', 1000)`, nil},
		{"offer in TRY", `INSERT INTO seller_offers (id, purchase_request_id, seller_id, price_amount, price_currency)
			VALUES (gen_random_uuid(), '` + prID + `', '` + sellerID + `', 1, 'TRY')`, nil},
	}
	for _, c := range accepted {
		t.Run(c.name, func(t *testing.T) {
			if err := inTx(t, conn, c.sql, c.args...); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

func TestMoneyRoundTripsExactly(t *testing.T) {
	t.Parallel()
	conn := fixtureDB(t)
	ctx := ctxT(t)
	for _, c := range []struct{ table, column, value string }{
		{"funds_ledger_entries", "amount", "0.000000000000000001"},
		{"funds_ledger_entries", "amount", "12345678901234567890.123456789012345678"},
		{"derived_destinations", "last_known_balance", "115792089237316195423570985008687907853269984665640564039457584007913129639935"}, // 2^256-1 wei
	} {
		var got string
		var err error
		switch c.table {
		case "funds_ledger_entries":
			err = conn.QueryRow(ctx, `INSERT INTO funds_ledger_entries (id, entry_type, amount, currency)
				VALUES (gen_random_uuid(), 'fee', $1::numeric, 'USDT') RETURNING amount::text`, c.value).Scan(&got)
		default:
			err = conn.QueryRow(ctx, `INSERT INTO derived_destinations (id, address, chain_id, last_known_balance)
				VALUES (gen_random_uuid(), $2, 137, $1::numeric) RETURNING last_known_balance::text`, c.value, "0x"+c.value[:8]).Scan(&got)
		}
		if err != nil {
			t.Fatalf("%s.%s = %s: %v", c.table, c.column, c.value, err)
		}
		if got != c.value {
			t.Fatalf("%s.%s: stored %s, read back %s", c.table, c.column, c.value, got)
		}
	}
}

func TestLedgerIsAppendOnly(t *testing.T) {
	t.Parallel()
	conn := fixtureDB(t)
	ctx := ctxT(t)
	for name, sql := range map[string]string{
		"UPDATE":                   `UPDATE funds_ledger_entries SET amount = amount + 1 WHERE id = '` + ledgerID + `'`,
		"DELETE":                   `DELETE FROM funds_ledger_entries WHERE id = '` + ledgerID + `'`,
		"TRUNCATE":                 `TRUNCATE funds_ledger_entries`,
		"TRUNCATE through CASCADE": `TRUNCATE payments CASCADE`,
	} {
		t.Run(name, func(t *testing.T) {
			err := inTx(t, conn, sql)
			wantPgError(t, err, restrictViolate, "")
			if !strings.Contains(err.Error(), "funds_ledger_entries is append-only") {
				t.Fatalf("message does not say why: %v", err)
			}
		})
	}

	// Both triggers fire even under session_replication_role = replica.
	var always int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger
		WHERE tgrelid = 'funds_ledger_entries'::regclass AND NOT tgisinternal AND tgenabled = 'A'`).Scan(&always); err != nil {
		t.Fatal(err)
	}
	if always != 2 {
		t.Fatalf("%d ledger triggers are ENABLE ALWAYS, want 2", always)
	}
	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		t.Fatal(err)
	}
	if super { // setting the role needs superuser; the catalog check above holds either way
		err := inTx(t, conn, `SET LOCAL session_replication_role = replica;
			UPDATE funds_ledger_entries SET amount = 1 WHERE id = '`+ledgerID+`'`)
		wantPgError(t, err, restrictViolate, "")
	}

	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM funds_ledger_entries WHERE id = '"+ledgerID+"' AND amount = 290.5").Scan(&n); err != nil || n != 1 {
		t.Fatalf("ledger entry changed: count %d (%v)", n, err)
	}
}

func TestIdempotencyIndexes(t *testing.T) {
	t.Parallel()
	conn := fixtureDB(t)
	ledger := `INSERT INTO funds_ledger_entries (id, entry_type, amount, currency, idempotency_key) VALUES (gen_random_uuid(), 'hold', 1, 'USDT', $1)`
	wantPgError(t, inTx(t, conn, ledger, "pay-1:deposit"), uniqueViolation, "funds_ledger_idempotency_uq")
	if err := inTx(t, conn, `INSERT INTO funds_ledger_entries (id, entry_type, amount, currency, idempotency_key) VALUES
		(gen_random_uuid(), 'fee', 1, 'USDT', NULL), (gen_random_uuid(), 'fee', 2, 'USDT', NULL)`); err != nil {
		t.Fatalf("two entries without idempotency key refused: %v", err)
	}

	payment := func(provider, direction, status string) string {
		return `INSERT INTO payments (id, provider, direction, status, amount, currency, rn_request_id)
			VALUES (gen_random_uuid(), '` + provider + `', '` + direction + `', '` + status + `', 1, 'USDT', 'rn-1')`
	}
	wantPgError(t, inTx(t, conn, payment("request_network", "in", "pending")), uniqueViolation, "payments_rn_pending_in_uq")
	for _, ok := range [][3]string{
		{"request_network", "in", "completed"}, // a settled payment may share the RN id
		{"request_network", "out", "pending"},  // outgoing payments are not covered
		{"trezor", "in", "pending"},            // other providers are not covered
	} {
		if err := inTx(t, conn, payment(ok[0], ok[1], ok[2])); err != nil {
			t.Fatalf("%v with the same rn_request_id refused: %v", ok, err)
		}
	}
}

func TestForeignKeys(t *testing.T) {
	t.Parallel()
	conn := fixtureDB(t)
	ctx := ctxT(t)
	for _, c := range []struct{ name, sql, cons string }{
		{"payment to missing request", `INSERT INTO payments (id, purchase_request_id, provider, direction, amount, currency)
			VALUES (gen_random_uuid(), '` + missingID + `', 'trezor', 'in', 1, 'USDT')`, "payments_pr_fk"},
		{"payment to fake seller", `INSERT INTO payments (id, seller_id, provider, direction, amount, currency)
			VALUES (gen_random_uuid(), '` + missingID + `', 'trezor', 'in', 1, 'USDT')`, "payments_seller_fk"},
		{"ledger to missing payment", `INSERT INTO funds_ledger_entries (id, entry_type, amount, currency, payment_id)
			VALUES (gen_random_uuid(), 'fee', 1, 'USDT', '` + missingID + `')`, "fle_payment_fk"},
		{"ledger to missing request", `INSERT INTO funds_ledger_entries (id, entry_type, amount, currency, purchase_request_id)
			VALUES (gen_random_uuid(), 'fee', 1, 'USDT', '` + missingID + `')`, "fle_pr_fk"},
		{"referrer missing", `UPDATE users SET referred_by_id = '` + missingID + `' WHERE id = '` + buyerID + `'`, "users_referred_by_fk"},
		{"trezor account of missing user", `INSERT INTO trezor_accounts (id, user_id, xpub) VALUES (gen_random_uuid(), '` + missingID + `', 'xpub')`, "ta_user_fk"},
		{"points of missing user", `INSERT INTO point_transactions (id, user_id, type, amount, balance)
			VALUES (gen_random_uuid(), '` + missingID + `', 'earned', 1, 1)`, "pt_user_fk"},
		{"deleting a paid user", `DELETE FROM users WHERE id = '` + buyerID + `'`, "payments_buyer_fk"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := inTx(t, conn, c.sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != fkViolation {
				t.Fatalf("want a foreign key violation, got %v", err)
			}
			// A delete may trip any of several referencing FKs first.
			if !strings.HasPrefix(c.name, "deleting") && pgErr.ConstraintName != c.cons {
				t.Fatalf("violated %s, want %s", pgErr.ConstraintName, c.cons)
			}
		})
	}

	t.Run("referrer deleted sets NULL", func(t *testing.T) {
		err := inTx(t, conn, `
			INSERT INTO users (id) VALUES ('`+missingID+`');
			UPDATE users SET referred_by_id = '`+missingID+`' WHERE id = '`+sellerID+`';
			DELETE FROM users WHERE id = '`+missingID+`';
			DO $$ BEGIN
				IF (SELECT referred_by_id FROM users WHERE id = '`+sellerID+`') IS NOT NULL THEN
					RAISE EXCEPTION 'referred_by_id not cleared';
				END IF;
			END $$;`)
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("deferred inside one transaction", func(t *testing.T) {
		// The sink may write children before parents inside one
		// transaction; the check happens at commit.
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
		child := "00000000-0000-4000-8000-0000000000c1"
		parent := "00000000-0000-4000-8000-0000000000c2"
		if _, err := tx.Exec(ctx, `SET CONSTRAINTS ALL DEFERRED;
			INSERT INTO seller_offers (id, purchase_request_id, seller_id, price_amount, price_currency)
				VALUES ('`+child+`', '`+parent+`', '`+sellerID+`', 10, 'USD');
			INSERT INTO purchase_requests (id, buyer_id, title) VALUES ('`+parent+`', '`+buyerID+`', 'late parent');`); err != nil {
			t.Fatalf("child before parent, deferred: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}

		tx2, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx2.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
		if _, err := tx2.Exec(ctx, `SET CONSTRAINTS ALL DEFERRED;
			INSERT INTO seller_offers (id, purchase_request_id, seller_id, price_amount, price_currency)
				VALUES (gen_random_uuid(), '`+missingID+`', '`+sellerID+`', 10, 'USD');`); err != nil {
			t.Fatalf("deferred insert failed early: %v", err)
		}
		wantPgError(t, tx2.Commit(ctx), fkViolation, "so_pr_fk")
	})
}

func TestUniqueKeys(t *testing.T) {
	t.Parallel()
	conn := fixtureDB(t)
	for _, c := range []struct{ name, sql, cons string }{
		{"id_map duplicate legacy id", `INSERT INTO id_map (collection, legacy_object_id, new_id)
			VALUES ('users', '65f0000000000000000000b1', gen_random_uuid())`, "id_map_pkey"},
		{"id_map duplicate new_id", `INSERT INTO id_map (collection, legacy_object_id, new_id)
			VALUES ('payments', '65f0000000000000000000b2', '` + buyerID + `')`, "id_map_new_id_uq"},
		{"preferred seller twice", `INSERT INTO purchase_request_preferred_sellers VALUES ('` + prID + `', '` + sellerID + `'), ('` + prID + `', '` + sellerID + `')`,
			"purchase_request_preferred_sellers_pkey"},
		{"active category name twice", `INSERT INTO categories (id, name) VALUES (gen_random_uuid(), 'Electronics')`, "categories_name_active_uq"},
		{"destination address twice on a chain", `INSERT INTO derived_destinations (id, address, chain_id) VALUES
			(gen_random_uuid(), '0xdead', 1), (gen_random_uuid(), '0xdead', 1)`, "idx_dd_addr_chain"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantPgError(t, inTx(t, conn, c.sql), uniqueViolation, c.cons)
		})
	}
	if err := inTx(t, conn, `INSERT INTO categories (id, name, is_active) VALUES (gen_random_uuid(), 'Electronics', false)`); err != nil {
		t.Fatalf("inactive category sharing a name refused: %v", err)
	}
	if err := inTx(t, conn, `INSERT INTO id_map (collection, legacy_object_id, new_id)
		VALUES ('payments', '65f0000000000000000000b1', gen_random_uuid())`); err != nil {
		t.Fatalf("same legacy id in another collection refused: %v", err)
	}
}
