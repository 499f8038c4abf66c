package migrate_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestCatalogMatchesAudit reads the migrated schema back from PostgreSQL's
// catalog and checks the audit's structural demands: the evidence audit 003
// asks the gate to see instead of trusting a prompt.
func TestCatalogMatchesAudit(t *testing.T) {
	t.Parallel()
	checkAuditCatalog(t, connect(t, migrated(t)))
}

// checkAuditCatalog runs the catalog checks on conn's database: one the
// migrations made, or one they adopted (TestAdoptAppSchema).
func checkAuditCatalog(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	strs := func(t *testing.T, sql string, args ...any) []string {
		t.Helper()
		rows, err := conn.Query(ctxT(t), sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("no floating point anywhere", func(t *testing.T) {
		if bad := strs(t, `SELECT table_schema || '.' || table_name || '.' || column_name FROM information_schema.columns
			WHERE table_schema IN ('public', 'cdc') AND data_type IN ('real', 'double precision')`); len(bad) > 0 {
			t.Fatalf("float columns: %v", bad)
		}
	})

	t.Run("numeric is numeric(38,18) or wei numeric(78,0)", func(t *testing.T) {
		if bad := strs(t, `SELECT table_name || '.' || column_name || ' ' || coalesce(numeric_precision::text, '?') || ',' || coalesce(numeric_scale::text, '?')
			FROM information_schema.columns
			WHERE table_schema = 'public' AND data_type = 'numeric'
			  AND (numeric_precision IS NULL OR (numeric_precision, numeric_scale) NOT IN ((38, 18), (78, 0)))`); len(bad) > 0 {
			t.Fatalf("numeric columns of another precision: %v", bad)
		}
		wei := strs(t, `SELECT table_name || '.' || column_name FROM information_schema.columns
			WHERE table_schema = 'public' AND numeric_precision = 78 ORDER BY 1`)
		if got := strings.Join(wei, ","); !strings.Contains(got, "derived_destinations.last_known_balance") {
			t.Fatalf("last_known_balance is not numeric(78,0): wei columns are %s", got)
		}
	})

	t.Run("every foreign key validated", func(t *testing.T) {
		if bad := strs(t, `SELECT conrelid::regclass || '.' || conname FROM pg_constraint
			WHERE contype = 'f' AND NOT convalidated`); len(bad) > 0 {
			t.Fatalf("foreign keys left NOT VALID: %v", bad)
		}
		have := map[string]bool{}
		for _, n := range strs(t, `SELECT conname FROM pg_constraint WHERE contype = 'f'`) {
			have[n] = true
		}
		// The audit's "Schema - Missing Physical FKs" list.
		for _, n := range []string{
			"users_referred_by_fk", "pr_buyer_fk", "pr_category_fk", "pr_selected_offer_fk",
			"prdi_pr_fk", "prda_delivery_info_fk", "prsdi_pr_fk", "prsi_pr_fk", "prs_pr_fk", "prps_pr_fk", "prps_seller_fk",
			"da_delivery_info_fk", "da_seller_fk",
			"dd_buyer_fk", "dd_seller_fk", "dd_seller_offer_fk", "dds_destination_fk",
			"ta_user_fk", "tda_account_fk", "fle_pr_fk", "fle_payment_fk",
			"pt_user_fk", "pt_referred_user_fk",
		} {
			if !have[n] {
				t.Errorf("foreign key %s missing", n)
			}
		}
		var delType string
		if err := conn.QueryRow(ctxT(t), `SELECT confdeltype::text FROM pg_constraint WHERE conname = 'users_referred_by_fk'`).Scan(&delType); err != nil || delType != "n" {
			t.Fatalf("users_referred_by_fk ON DELETE = %q (%v), want SET NULL (n)", delType, err)
		}
	})

	t.Run("partial unique idempotency indexes", func(t *testing.T) {
		// By definition, not by name: an adopted database keeps the
		// application's name for an index that is already right.
		def := func(table string, parts ...string) {
			t.Helper()
			defs := strs(t, `SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1`, table)
			for _, d := range defs {
				all := true
				for _, p := range parts {
					all = all && strings.Contains(d, p)
				}
				if all {
					return
				}
			}
			t.Errorf("no index on %s has %q: %s", table, parts, strings.Join(defs, "; "))
		}
		def("payments", "UNIQUE", "(rn_request_id)", "'request_network'", "'in'", "'pending'")
		def("funds_ledger_entries", "UNIQUE", "(idempotency_key)", "WHERE (idempotency_key IS NOT NULL)")
	})

	t.Run("punch-list indexes exist and are valid", func(t *testing.T) {
		have := map[string]bool{}
		for _, n := range strs(t, `SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND x.indisvalid`) {
			have[n] = true
		}
		for _, n := range []string{
			"idx_payments_pr_status", "idx_payments_disputed", "idx_dd_addr_chain", "idx_pr_status_created",
			"idx_pr_tags", "idx_so_seller_status", "idx_so_pr_status", "idx_tda_address", "idx_users_name_trgm",
			"id_map_pkey", "id_map_new_id_uq", "purchase_request_preferred_sellers_pkey",
		} {
			if !have[n] {
				t.Errorf("index %s missing or invalid", n)
			}
		}
	})

	t.Run("enums carry the audit's values", func(t *testing.T) {
		for typ, vals := range map[string][]string{
			"payment_provider":  {"request_network"},
			"payment_direction": {"in", "out"},
			"payment_status":    {"pending", "processing", "completed", "failed", "cancelled", "refunded"},
			"ledger_entry_type": {"deposit", "hold", "release", "refund", "fee"},
			"offer_currency":    {"TRY"},
		} {
			got := map[string]bool{}
			for _, v := range strs(t, `SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1::regtype`, typ) {
				got[v] = true
			}
			for _, v := range vals {
				if !got[v] {
					t.Errorf("enum %s lacks %q", typ, v)
				}
			}
		}
	})

	t.Run("application tables carry no replicator columns", func(t *testing.T) {
		if bad := strs(t, `SELECT table_name || '.' || column_name FROM information_schema.columns
			WHERE table_schema = 'public' AND column_name IN ('cluster_time', 'stream_seq', 'resume_token', 'txn_index')`); len(bad) > 0 {
			t.Fatalf("replicator bookkeeping in application tables: %v", bad)
		}
	})
}
