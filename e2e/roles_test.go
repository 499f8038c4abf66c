package e2e

// The least-privilege roles of deploy/postgres/roles.sql, end to end: the
// migration role owns what `cdc migrate` creates, the replicator runs as
// the sink role and replicates the money-core collections exactly, the
// sink-side commands (verify, status, dlq retry) work under it, and the
// sink role cannot change or remove a ledger entry, nor switch the
// ledger's triggers off, nor change the schema.

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/dlq"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// rolesSQL is the operator's script, run as the file says.
var rolesSQL = filepath.Join("..", "deploy", "postgres", "roles.sql")

// asRole is dbURL with its user and password replaced.
func asRole(t testing.TB, dbURL, user, password string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	must(t, err)
	u.User = url.UserPassword(user, password)
	return u.String()
}

// TestLeastPrivilegeRoles: roles.sql, `cdc migrate` as cdc_owner and
// roles.sql again (the documented order) give a schema owned by cdc_owner
// in which the replicator, running as cdc_sink, replicates the escrow
// collections exactly (verify passes, run as cdc_sink too), `cdc status`
// and `cdc dlq retry` work as cdc_sink, and cdc_sink is refused (42501)
// every statement that would change or remove ledger entries or the
// schema.
func TestLeastPrivilegeRoles(t *testing.T) {
	set, err := transform.Load(transforms.Builtin, ".")
	must(t, err)
	// newBaseEnv gives the Mongo side (and a database migrated by the
	// superuser, which this test does not use): the roles need a database
	// that no migration has touched.
	e := newBaseEnv(t, "cdc_roles", set.Collections())
	e.tdir = ""
	adminURL := pgtest.NewDatabase(t)
	admin, err := pgxpool.New(e.ctx, adminURL)
	must(t, err)
	t.Cleanup(admin.Close)
	e.pgURL, e.pool = adminURL, admin // the test's own reads and checks

	script, err := os.ReadFile(rolesSQL)
	must(t, err)
	applyRoles := func(step string) {
		t.Helper()
		if _, err := admin.Exec(e.ctx, string(script)); err != nil {
			t.Fatalf("%s: %s: %v", step, rolesSQL, err)
		}
	}
	applyRoles("step 1, before the first migration")
	// Passwords as roles.sql says: set from the secret store, never in the
	// file. (The test cluster trusts local connections; a server with
	// scram-sha-256 in pg_hba.conf checks them.)
	const ownerPassword, sinkPassword = "owner-Secret-1", "sink-Secret-2"
	for role, pw := range map[string]string{"cdc_owner": ownerPassword, "cdc_sink": sinkPassword} {
		_, err := admin.Exec(e.ctx, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", role, pw))
		must(t, err)
	}
	ownerURL := asRole(t, adminURL, "cdc_owner", ownerPassword)
	sinkURL := asRole(t, adminURL, "cdc_sink", sinkPassword)

	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Transforms.Dir = ""
	cfg.Tailer.StartAt = e.startAt()
	ownerCfg := cfg
	ownerCfg.Postgres.URL = ownerURL
	if r := e.cdc(e.writeConfig(ownerCfg), "migrate"); r.code != 0 {
		t.Fatalf("cdc migrate as cdc_owner: %s", r)
	}
	applyRoles("step 3, after the migration")

	t.Run("cdc_owner owns every relation, cdc_sink none", func(t *testing.T) {
		e.t = t
		rows := e.mcRows(`SELECT jsonb_build_object('rel', n.nspname || '.' || c.relname, 'owner', pg_get_userbyid(c.relowner))
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname IN ('public', 'cdc') AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
			  AND pg_get_userbyid(c.relowner) <> 'cdc_owner'`)
		if len(rows) != 0 {
			t.Fatalf("relations not owned by cdc_owner: %v", rows)
		}
		if n := e.mcCount(`SELECT count(*) FROM pg_class WHERE relname = 'funds_ledger_entries' AND relowner = 'cdc_owner'::regrole`); n != 1 {
			t.Fatalf("funds_ledger_entries is not cdc_owner's")
		}
		if n := e.mcCount(`SELECT count(*) FROM pg_namespace WHERE nspname = 'cdc' AND nspowner = 'cdc_owner'::regrole`); n != 1 {
			t.Fatalf("schema cdc is not cdc_owner's")
		}
	})

	sinkCfg := cfg
	sinkCfg.Postgres.URL = sinkURL
	e.t = t
	e.runApp(sinkCfg, app.Options{})
	want := e.verifyDataset()
	for table, rows := range want {
		e.mcEventually("rows of "+table+" applied by cdc_sink", func() string {
			if got := e.mcCount(fmt.Sprintf("SELECT count(*) FROM %s", table)); got != rows {
				return fmt.Sprintf("%d rows, want %d", got, rows)
			}
			return ""
		})
	}
	if n := e.mcCount(`SELECT count(*) FROM cdc.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters under cdc_sink:%s", n, e.mcDeadLetterSummary())
	}
	// Updates and deletes of mutable tables go through cdc_sink's UPDATE
	// and DELETE (and the child tables' replace-whole, and doc_versions).
	e.mcUpdate("users", mcBuyer, bson.D{{Key: "$set", Value: bson.D{{Key: "email", Value: "buyer-new@example.com"}}}})
	e.mcExpectRow("users", "users", mcBuyer, map[string]string{"email": "buyer-new@example.com"})
	e.mcDelete("trezorAccounts", mcTrezor)
	e.mcExpectGone("trezor_accounts", "trezorAccounts", mcTrezor)

	sinkPath := e.writeConfig(sinkCfg)
	t.Run("verify as cdc_sink passes", func(t *testing.T) {
		e.t = t
		expectPass(t, e.runVerify(sinkCfg, "--recheck-wait", "5s"))
	})
	t.Run("status as cdc_sink reads the Postgres state", func(t *testing.T) {
		e.t = t
		_, r, out := e.statusCLI(sinkPath)
		if !r.Postgres.Reachable || r.Postgres.Error != "" || r.Sink.Error != "" || r.Deferred.Error != "" ||
			(r.Sink.Fence != nil && r.Sink.Fence.Error != "") || strings.Contains(out, "42501") || strings.Contains(out, "permission denied") {
			t.Fatalf("status as cdc_sink could not read everything:\n%s", out)
		}
	})
	t.Run("dlq retry as cdc_sink applies a ledger entry", func(t *testing.T) {
		e.t = t
		user, ledger := bson.NewObjectID(), bson.NewObjectID()
		doc := mcSet(e.example("fundsLedger", "hold"), "_id", ledger)
		doc = mcSet(mcSet(doc, "purchaseRequestId", nil), "paymentId", nil)
		doc = mcSet(mcSet(doc, "userId", user), "idempotencyKey", "roles-"+ledger.Hex())
		e.mcInsert("fundsLedger", doc)
		e.mcExpectDeadLetter("fundsLedger", ledger.Hex(), "rejected", "userId", "(policy reject)")
		e.mcInsert("users", bson.D{{Key: "_id", Value: user},
			{Key: "points", Value: bson.D{{Key: "available", Value: 0}, {Key: "used", Value: 0}, {Key: "total", Value: 0}}}})
		e.mcEventually("the user replicated", func() string {
			if e.mcRow("users", "id", "users", user.Hex()) == nil {
				return "no users row"
			}
			return ""
		})
		var rep dlq.Report
		e.cdcJSON(sinkPath, 0, &rep, "dlq", "retry", "--all")
		if rep.Selected != 1 || rep.Applied != 1 || rep.Closed != 1 {
			t.Fatalf("dlq retry as cdc_sink: %+v", rep)
		}
		e.mcExpectRow("funds_ledger_entries", "fundsLedger", ledger.Hex(), map[string]string{"user_id": mcRef("users", user.Hex())})
	})

	t.Run("cdc_sink is refused changes to the ledger and the schema", func(t *testing.T) {
		e.t = t
		conn, err := pgx.Connect(e.ctx, sinkURL)
		must(t, err)
		defer conn.Close(e.ctx)
		before := e.mcCount(`SELECT count(*) FROM funds_ledger_entries`)
		var visible int
		must(t, conn.QueryRow(e.ctx, `SELECT count(*) FROM funds_ledger_entries`).Scan(&visible))
		if visible != before {
			t.Fatalf("cdc_sink sees %d ledger entries, the table has %d", visible, before)
		}
		for _, sql := range []string{
			`UPDATE funds_ledger_entries SET amount = amount + 1`,
			`DELETE FROM funds_ledger_entries`,
			`TRUNCATE funds_ledger_entries`,
			`ALTER TABLE funds_ledger_entries ADD COLUMN forged text`,
			`ALTER TABLE funds_ledger_entries DISABLE TRIGGER funds_ledger_no_update_delete`,
			`ALTER TABLE funds_ledger_entries DISABLE TRIGGER ALL`,
			`DROP TRIGGER funds_ledger_no_truncate ON funds_ledger_entries`,
			`DROP TABLE funds_ledger_entries`,
			`CREATE OR REPLACE FUNCTION funds_ledger_immutable_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$`,
			`SET session_replication_role = replica`,
			`TRUNCATE cdc.sink_positions`,
			`UPDATE cdc.goose_db_version SET is_applied = false`,
			`ALTER TABLE payments ADD COLUMN forged text`,
			`CREATE TABLE forged (id int)`,
			`CREATE TABLE cdc.forged (id int)`,
			`CREATE SCHEMA forged`,
		} {
			_, err := conn.Exec(e.ctx, sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("as cdc_sink %q: %v, want SQLSTATE 42501 (insufficient_privilege)", sql, err)
			}
		}
		if after := e.mcCount(`SELECT count(*) FROM funds_ledger_entries`); after != before {
			t.Fatalf("ledger entries %d -> %d", before, after)
		}
		// Both triggers still fire always ('A'), replica sessions included.
		if n := e.mcCount(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'funds_ledger_entries'::regclass AND NOT tgisinternal AND tgenabled = 'A'`); n != 2 {
			t.Fatalf("%d of the ledger's 2 triggers are ENABLE ALWAYS", n)
		}
	})
}
