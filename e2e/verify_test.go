package e2e

// End-to-end tests of `cdc verify`: the built binary against the whole
// pipeline (MongoDB -> tailer -> JetStream -> sink -> PostgreSQL). An
// exact replica passes with counts; every corruption made behind the
// replicator's back is caught and named; an unreachable database is a
// failure naming it, never a pass; and a verify run during a live load
// reports nothing but a real corruption made during that load.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/verify"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// verifyRun is one run of `cdc verify --json`.
type verifyRun struct {
	code           int
	rep            *verify.Report
	stdout, stderr string
	took           time.Duration
}

// runVerify runs the cdc binary's verify command with cfg written as the
// operator's YAML file.
func (e *env) runVerify(cfg config.Config, args ...string) verifyRun {
	e.t.Helper()
	path := e.writeConfig(cfg)
	cmd := exec.Command(cdcBinary, append([]string{"verify", "-c", path, "--json", "--progress", "none"}, args...)...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	vr := verifyRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		vr.code = ee.ExitCode()
	default:
		e.t.Fatalf("run cdc verify: %v", err)
	}
	var rep verify.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err == nil && rep.Version == verify.ReportVersion {
		vr.rep = &rep
	}
	return vr
}

func (vr verifyRun) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%s\nstderr:\n%s", vr.code, vr.took.Round(time.Millisecond), tail(vr.stdout, 12000), tail(vr.stderr, 3000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (vr verifyRun) check(coll, name string) *verify.Check {
	if vr.rep == nil {
		return nil
	}
	for _, c := range vr.rep.Checks {
		if c.Collection == coll && c.Name == name {
			return c
		}
	}
	return nil
}

// failing lists "collection/check" of every check that did not pass.
func (vr verifyRun) failing() []string {
	var out []string
	if vr.rep != nil {
		for _, c := range vr.rep.Checks {
			if c.Status != verify.StatusPass {
				out = append(out, c.Collection+"/"+c.Name)
			}
		}
	}
	return out
}

// expectPass fails unless the run exited 0 with a report in which every
// check passed.
func expectPass(t *testing.T, vr verifyRun) {
	t.Helper()
	if vr.code != 0 || vr.rep == nil || !vr.rep.OK || vr.rep.Totals.Passed != vr.rep.Totals.Checks || vr.rep.Totals.Mismatches != 0 {
		t.Fatalf("verify did not pass (failing: %v):\n%s", vr.failing(), vr)
	}
	for _, c := range vr.rep.Checks {
		if c.Status != verify.StatusPass || c.Mismatches != 0 || c.Counts == nil {
			t.Fatalf("check %s/%s: %s with %d mismatches", c.Collection, c.Name, c.Status, c.Mismatches)
		}
	}
}

// expectCaught fails unless the run exited non-zero and check coll/name
// failed with an example naming id (a Mongo _id or a Postgres row id) and,
// when column is not "", that column.
func expectCaught(t *testing.T, vr verifyRun, coll, name, id, column string) {
	t.Helper()
	if vr.code == 0 || vr.rep == nil || vr.rep.OK {
		t.Fatalf("verify passed a corruption (%s/%s of %s):\n%s", coll, name, id, vr)
	}
	c := vr.check(coll, name)
	if c == nil || c.Status != verify.StatusFail || c.Mismatches == 0 {
		t.Fatalf("check %s/%s did not fail (failing: %v):\n%s", coll, name, vr.failing(), vr)
	}
	for _, ex := range c.Examples {
		if (id == "" || ex.ID == id || ex.PGID == id) && (column == "" || ex.Column == column) {
			return
		}
	}
	t.Fatalf("check %s/%s failed but names neither %s nor column %q: %+v", coll, name, id, column, c.Examples)
}

// expectFailingExactly fails unless exactly the checks want failed.
func expectFailingExactly(t *testing.T, vr verifyRun, want ...string) {
	t.Helper()
	got := vr.failing()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("failing checks %v, want exactly %v:\n%s", got, want, vr)
	}
}

// exec runs SQL behind the replicator's back, in one transaction; replica
// switches off the foreign-key triggers (session_replication_role), as an
// operator's manual repair or a bad backfill would.
func (e *env) sqlBehind(replica bool, sql string, args ...any) {
	e.t.Helper()
	err := pgx.BeginFunc(e.ctx, e.pool, func(tx pgx.Tx) error {
		if replica {
			if _, err := tx.Exec(e.ctx, "SET LOCAL session_replication_role = replica"); err != nil {
				return err
			}
		}
		_, err := tx.Exec(e.ctx, sql, args...)
		return err
	})
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func vfDec(t testing.TB, s string) bson.Decimal128 {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	must(t, err)
	return d
}

// Legacy ids of the verify dataset besides the examples'.
const (
	vfRefunded = "65f5000000000000000000a2" // payment refunded, with hold + refund entries
	vfReleased = "65f5000000000000000000a3" // payment released, with hold + release entries
	vfHold1    = "65f600000000000000000001" // hold of mcPayment (the example)
	vfHold2    = "65f6000000000000000000b2"
	vfRefund2  = "65f6000000000000000000c2"
	vfHold3    = "65f6000000000000000000b3"
	vfRelease3 = "65f6000000000000000000c3"
)

// verifyDataset writes a consistent escrow dataset through the pipeline:
// every money-core collection, child tables, a dangling reference under
// policy null, and three payments (held, refunded, released) with their
// ledger entries. It returns the number of documents per table.
func (e *env) verifyDataset() map[string]int {
	t := e.t
	at := func(s string) bson.DateTime {
		ts, err := time.Parse(time.RFC3339, s)
		must(t, err)
		return bson.NewDateTimeFromTime(ts)
	}
	e.mcInsert("users", bson.D{{Key: "_id", Value: mcOID(t, mcReferrer)}, {Key: "email", Value: "ref@example.com"},
		{Key: "points", Value: bson.D{{Key: "available", Value: int32(0)}, {Key: "used", Value: int32(0)}, {Key: "total", Value: int32(0)}}},
		{Key: "createdAt", Value: at("2024-03-01T00:00:00Z")}})
	e.mcInsert("users", e.example("users", "full"))
	e.mcInsert("users", e.example("users", "minimal"))
	e.mcInsert("categories", e.example("categories", "root"))
	e.mcInsert("categories", e.example("categories", "child"))
	e.mcInsert("requestTemplates", e.example("requestTemplates", "full"))
	pr := mcSet(e.example("purchaseRequests", "full"), "selectedOfferId", nil)
	pr = mcSet(pr, "preferredSellers", bson.A{mcOID(t, mcSeller), mcOID(t, mcSeller)})
	e.mcInsert("purchaseRequests", pr)
	e.mcInsert("sellerOffers", e.example("sellerOffers", "full"))

	pay := e.example("payments", "request_network") // held; metadata.sellerId dangles (policy null)
	e.mcInsert("payments", pay)
	refunded := mcSet(mcSet(mcSet(pay, "_id", mcOID(t, vfRefunded)), "status", "refunded"), "escrowState", "refunded")
	refunded = mcSet(mcSet(refunded, "amount", vfDec(t, "250.5")), "metadata", bson.D{{Key: "rnRequestId", Value: "rn-refunded"}})
	e.mcInsert("payments", refunded)
	released := mcSet(mcSet(mcSet(pay, "_id", mcOID(t, vfReleased)), "escrowState", "released"), "metadata", bson.D{})
	e.mcInsert("payments", released)

	entry := func(id, typ, payment, state, amount, created string) bson.D {
		d := e.example("fundsLedger", "hold")
		d = mcSet(mcSet(mcSet(d, "_id", mcOID(t, id)), "entryType", typ), "paymentId", mcOID(t, payment))
		d = mcSet(mcSet(d, "escrowState", state), "amount", vfDec(t, amount))
		return mcSet(mcSet(d, "idempotencyKey", "pay:"+payment+":"+typ), "createdAt", at(created))
	}
	e.mcInsert("fundsLedger", e.example("fundsLedger", "hold"))
	e.mcInsert("fundsLedger", entry(vfHold2, "hold", vfRefunded, "held", "250.5", "2024-03-17T10:00:00Z"))
	e.mcInsert("fundsLedger", entry(vfRefund2, "refund", vfRefunded, "refunded", "250.5", "2024-03-18T10:00:00Z"))
	e.mcInsert("fundsLedger", entry(vfHold3, "hold", vfReleased, "held", "1099.99", "2024-03-17T10:00:00Z"))
	e.mcInsert("fundsLedger", entry(vfRelease3, "release", vfReleased, "released", "1099.99", "2024-03-19T10:00:00Z"))

	e.mcInsert("derivedDestinations", e.example("derivedDestinations", "full"))
	e.mcInsert("trezorAccounts", e.example("trezorAccounts", "full"))
	e.mcInsert("pointTransactions", e.example("pointTransactions", "referral"))
	return map[string]int{"users": 3, "categories": 2, "request_templates": 1, "purchase_requests": 1, "seller_offers": 1,
		"payments": 3, "funds_ledger_entries": 5, "derived_destinations": 1, "trezor_accounts": 1, "point_transactions": 1,
		"purchase_request_specifications": 3, "derived_destination_sweeps": 1, "trezor_derived_addresses": 2}
}

// TestVerifyMoneyCore: on an exact replica of the escrow collections
// verify exits 0 and its JSON says every check passed, with counts; then
// each corruption made behind the replicator's back is caught and named,
// and once repaired verify passes again.
func TestVerifyMoneyCore(t *testing.T) {
	e := newMoneyEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Transforms.Dir = ""
	cfg.Tailer.StartAt = e.startAt()
	e.runApp(cfg, app.Options{})
	want := e.verifyDataset()
	for table, rows := range want {
		e.mcEventually("rows of "+table, func() string {
			if got := e.mcCount(fmt.Sprintf("SELECT count(*) FROM %s", table)); got != rows {
				return fmt.Sprintf("%d rows, want %d", got, rows)
			}
			return ""
		})
	}
	if n := e.mcCount(`SELECT count(*) FROM cdc.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters in the dataset:%s", n, e.mcDeadLetterSummary())
	}
	run := func(t *testing.T) verifyRun {
		e.t = t
		return e.runVerify(cfg, "--recheck-wait", "5s")
	}

	t.Run("exact replica passes with counts", func(t *testing.T) {
		vr := run(t)
		expectPass(t, vr)
		t.Logf("verify of the exact replica: %d checks in %s", vr.rep.Totals.Checks, vr.took.Round(time.Millisecond))
		if len(vr.rep.Collections) != 10 {
			t.Fatalf("verified %v, want the 10 money-core collections", vr.rep.Collections)
		}
		for _, tc := range []struct {
			coll, check, count string
			want               int64
		}{
			{"payments", "count", "mongo", 3}, {"payments", "count", "postgres", 3},
			{"fundsLedger", "count", "postgres", 5}, {"purchaseRequests", "document_diff", "compared", 1},
			{"payments", "idmap_mongo_to_pg", "documents", 3}, {"payments", "idmap_pg_to_mongo", "rows", 3},
			{"ledger", "ledger_settlement_entries", "checked", 2}, {"ledger", "ledger_escrow_state", "checked", 3},
			{"ledger", "ledger_double_refund", "checked", 1}, {"purchaseRequests", "fk_integrity", "dangling", 0},
		} {
			c := vr.check(tc.coll, tc.check)
			if c == nil {
				t.Fatalf("no check %s/%s in the report", tc.coll, tc.check)
			}
			if got := c.Counts[tc.count]; got != tc.want {
				t.Errorf("%s/%s counts[%s] = %d, want %d (%v)", tc.coll, tc.check, tc.count, got, tc.want, c.Counts)
			}
		}
		if c := vr.check("payments", "money_sums"); c == nil || c.Counts["columns"] != 1 || c.Counts["sums"] < 3 {
			t.Fatalf("payments money_sums did not sum amount per status: %+v", c)
		}
	})

	pointsRow := fmt.Sprintf(`(SELECT new_id FROM id_map WHERE collection = 'pointTransactions' AND legacy_object_id = '%s')`, mcPoints)
	paymentRow := func(hex string) string {
		return fmt.Sprintf(`(SELECT new_id FROM id_map WHERE collection = 'payments' AND legacy_object_id = '%s')`, hex)
	}

	t.Run("missing row", func(t *testing.T) {
		e.t = t
		e.sqlBehind(false, `CREATE TABLE verify_bak_points AS SELECT * FROM point_transactions WHERE id = `+pointsRow)
		e.sqlBehind(false, `DELETE FROM point_transactions WHERE id = `+pointsRow)
		vr := run(t)
		expectCaught(t, vr, "pointTransactions", "count", "", "")
		expectCaught(t, vr, "pointTransactions", "idmap_mongo_to_pg", mcPoints, "")
		expectCaught(t, vr, "pointTransactions", "money_sums", "", "amount")
		e.sqlBehind(false, `INSERT INTO point_transactions SELECT * FROM verify_bak_points; DROP TABLE verify_bak_points`)
	})

	t.Run("extra row", func(t *testing.T) {
		e.t = t
		ghost := bson.NewObjectID().Hex()
		e.sqlBehind(false, `INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES ('pointTransactions', $1, gen_random_uuid())`, ghost)
		e.sqlBehind(false, `INSERT INTO point_transactions SELECT (SELECT new_id FROM id_map WHERE collection = 'pointTransactions' AND legacy_object_id = '`+ghost+`'),
			user_id, type, amount, balance, referred_user_id, purchase_request_id, description, metadata, created_at FROM point_transactions WHERE id = `+pointsRow)
		vr := run(t)
		expectCaught(t, vr, "pointTransactions", "count", "", "")
		expectCaught(t, vr, "pointTransactions", "idmap_pg_to_mongo", ghost, "")
		expectCaught(t, vr, "pointTransactions", "money_sums", "", "amount")
		e.sqlBehind(false, `DELETE FROM point_transactions WHERE id = (SELECT new_id FROM id_map WHERE collection = 'pointTransactions' AND legacy_object_id = $1)`, ghost)
		e.sqlBehind(false, `DELETE FROM id_map WHERE collection = 'pointTransactions' AND legacy_object_id = $1`, ghost)
	})

	t.Run("amount changed in the 18th decimal place", func(t *testing.T) {
		e.t = t
		e.sqlBehind(false, `UPDATE payments SET amount = amount + 0.000000000000000001 WHERE id = `+paymentRow(vfReleased))
		vr := run(t)
		expectCaught(t, vr, "payments", "document_diff", vfReleased, "amount")
		expectCaught(t, vr, "payments", "money_sums", "", "amount")
		c := vr.check("payments", "document_diff")
		if ex := c.Examples[0]; ex.Mongo != "1099.99" || ex.Postgres != "1099.990000000000000001" {
			t.Fatalf("amounts not shown exactly: mongo %q, postgres %q", ex.Mongo, ex.Postgres)
		}
		expectFailingExactly(t, vr, "payments/document_diff", "payments/money_sums")
		e.sqlBehind(false, `UPDATE payments SET amount = amount - 0.000000000000000001 WHERE id = `+paymentRow(vfReleased))
	})

	t.Run("missing id_map entry", func(t *testing.T) {
		e.t = t
		var newID string
		must(t, e.pool.QueryRow(e.ctx, `DELETE FROM id_map WHERE collection = 'sellerOffers' AND legacy_object_id = $1 RETURNING new_id::text`, mcOffer).Scan(&newID))
		vr := run(t)
		expectCaught(t, vr, "sellerOffers", "idmap_mongo_to_pg", mcOffer, "")
		expectCaught(t, vr, "sellerOffers", "idmap_pg_to_mongo", newID, "")
		expectCaught(t, vr, "payments", "document_diff", mcPayment, "seller_offer_id")
		e.sqlBehind(false, `INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES ('sellerOffers', $1, $2)`, mcOffer, newID)
	})

	t.Run("dangling foreign key", func(t *testing.T) {
		e.t = t
		var userID string
		must(t, e.pool.QueryRow(e.ctx, `SELECT user_id::text FROM point_transactions WHERE id = `+pointsRow).Scan(&userID))
		e.sqlBehind(true, `UPDATE point_transactions SET user_id = gen_random_uuid() WHERE id = `+pointsRow)
		vr := run(t)
		expectCaught(t, vr, "pointTransactions", "fk_integrity", mcPoints, "user_id")
		expectCaught(t, vr, "pointTransactions", "document_diff", mcPoints, "user_id")
		e.sqlBehind(true, `UPDATE point_transactions SET user_id = $1 WHERE id = `+pointsRow, userID)
	})

	t.Run("missing child row", func(t *testing.T) {
		e.t = t
		prRow := fmt.Sprintf(`(SELECT new_id FROM id_map WHERE collection = 'purchaseRequests' AND legacy_object_id = '%s')`, mcRequest)
		e.sqlBehind(false, `CREATE TABLE verify_bak_specs AS SELECT * FROM purchase_request_specifications WHERE ordinal = 1 AND purchase_request_id = `+prRow)
		e.sqlBehind(false, `DELETE FROM purchase_request_specifications WHERE ordinal = 1 AND purchase_request_id = `+prRow)
		vr := run(t)
		expectCaught(t, vr, "purchaseRequests", "document_diff", mcRequest, "specifications")
		if ex := vr.check("purchaseRequests", "document_diff").Examples[0]; ex.Table != "purchase_request_specifications" || !strings.Contains(ex.Detail, "Natural Titanium") {
			t.Fatalf("the missing child row is not named: %+v", ex)
		}
		expectFailingExactly(t, vr, "purchaseRequests/document_diff")
		e.sqlBehind(false, `INSERT INTO purchase_request_specifications SELECT * FROM verify_bak_specs; DROP TABLE verify_bak_specs`)
	})

	t.Run("ledger entry without its payment", func(t *testing.T) {
		e.t = t
		e.sqlBehind(false, `CREATE TABLE verify_bak_payment AS SELECT * FROM payments WHERE id = `+paymentRow(vfReleased))
		e.sqlBehind(true, `DELETE FROM payments WHERE id = `+paymentRow(vfReleased))
		vr := run(t)
		expectCaught(t, vr, "ledger", "ledger_entry_payment", vfRelease3, "")
		expectCaught(t, vr, "ledger", "ledger_entry_payment", vfHold3, "")
		expectCaught(t, vr, "fundsLedger", "fk_integrity", vfRelease3, "payment_id")
		expectCaught(t, vr, "payments", "idmap_mongo_to_pg", vfReleased, "")
		e.sqlBehind(false, `INSERT INTO payments SELECT * FROM verify_bak_payment; DROP TABLE verify_bak_payment`)
	})

	t.Run("double refund", func(t *testing.T) {
		e.t = t
		ghost := bson.NewObjectID().Hex()
		e.sqlBehind(false, `INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES ('fundsLedger', $1, gen_random_uuid())`, ghost)
		e.sqlBehind(false, `INSERT INTO funds_ledger_entries (id, entry_type, amount, currency, payment_id, escrow_state, idempotency_key, created_at)
			SELECT (SELECT new_id FROM id_map WHERE collection = 'fundsLedger' AND legacy_object_id = $1), 'refund', 250.5, 'USDT', `+paymentRow(vfRefunded)+`,
			       'refunded', 'double-refund', '2024-03-20T10:00:00Z'`, ghost)
		vr := run(t)
		expectCaught(t, vr, "ledger", "ledger_double_refund", vfRefunded, "")
		expectCaught(t, vr, "ledger", "ledger_overdisbursed", vfRefunded, "")
		expectCaught(t, vr, "fundsLedger", "idmap_pg_to_mongo", ghost, "")
		// The ledger refuses DELETE (append-only triggers): an operator's
		// repair switches the trigger off for one transaction.
		e.sqlBehind(false, `ALTER TABLE funds_ledger_entries DISABLE TRIGGER funds_ledger_no_update_delete;
			DELETE FROM funds_ledger_entries WHERE idempotency_key = 'double-refund';
			ALTER TABLE funds_ledger_entries ENABLE ALWAYS TRIGGER funds_ledger_no_update_delete`)
		e.sqlBehind(false, `DELETE FROM id_map WHERE collection = 'fundsLedger' AND legacy_object_id = $1`, ghost)
	})

	t.Run("escrow state disagrees with the ledger", func(t *testing.T) {
		e.t = t
		e.sqlBehind(false, `UPDATE payments SET escrow_state = 'held' WHERE id = `+paymentRow(vfReleased))
		vr := run(t)
		expectCaught(t, vr, "ledger", "ledger_escrow_state", vfReleased, "escrow_state")
		expectCaught(t, vr, "payments", "document_diff", vfReleased, "escrow_state")
		expectFailingExactly(t, vr, "payments/document_diff", "ledger/ledger_escrow_state")
		e.sqlBehind(false, `UPDATE payments SET escrow_state = 'released' WHERE id = `+paymentRow(vfReleased))
	})

	t.Run("dangling reference without its record", func(t *testing.T) {
		e.t = t
		// payments.seller_id is NULL because metadata.sellerId points
		// nowhere (policy null); that is only right while it is recorded.
		e.sqlBehind(false, `CREATE TABLE verify_bak_dangling AS SELECT * FROM cdc.dangling_refs WHERE collection = 'payments'`)
		e.sqlBehind(false, `DELETE FROM cdc.dangling_refs WHERE collection = 'payments'`)
		vr := run(t)
		expectCaught(t, vr, "payments", "document_diff", mcPayment, "seller_id")
		expectFailingExactly(t, vr, "payments/document_diff")
		e.sqlBehind(false, `INSERT INTO cdc.dangling_refs SELECT * FROM verify_bak_dangling; DROP TABLE verify_bak_dangling`)
	})

	t.Run("document the sink dead-lettered", func(t *testing.T) {
		e.t = t
		// In Mongo with a NULL amount (CR-4): the sink refuses it, so
		// Postgres lacks it, and verify says why.
		const nullAmount = "65f500000000000000000003"
		e.mcInsert("payments", e.example("payments", "null_amount"))
		e.mcExpectDeadLetter("payments", nullAmount, "rejected", "amount", "required field is missing or null")
		vr := run(t)
		expectCaught(t, vr, "payments", "count", "", "")
		expectCaught(t, vr, "payments", "document_diff", nullAmount, "")
		ex := vr.check("payments", "document_diff").Examples[0]
		if !strings.Contains(ex.Detail, "transform rejects") || !strings.Contains(ex.Detail, "amount") || !strings.Contains(ex.Detail, "open dead letter") {
			t.Fatalf("the rejection is not explained: %+v", ex)
		}
		expectFailingExactly(t, vr, "payments/count", "payments/idmap_mongo_to_pg", "payments/document_diff")
		e.mcDelete("payments", nullAmount)
		e.mcEventually("delete of the refused payment consumed", func() string {
			if n := e.mcCount(`SELECT count(*) FROM cdc.dead_letters WHERE doc_key = $1`, nullAmount); n < 2 {
				return fmt.Sprintf("%d dead letters", n)
			}
			return ""
		})
	})

	t.Run("repaired replica passes again", func(t *testing.T) {
		expectPass(t, run(t))
	})
}

// TestVerifyUnreachable: an unreachable MongoDB or PostgreSQL is a
// non-zero exit within the connect timeout, naming the database, and the
// JSON report says so; never a pass.
func TestVerifyUnreachable(t *testing.T) {
	e := newEnv(t)
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, tc := range []struct {
		name, system, want string
		cfg                func(*config.Config)
	}{
		{"mongodb", verify.SystemMongo, "MongoDB unreachable", func(c *config.Config) {
			c.Mongo.URI = "mongodb://" + closed + "/?directConnection=true"
		}},
		{"postgresql", verify.SystemPostgres, "PostgreSQL unreachable", func(c *config.Config) {
			c.Postgres.URL = "postgres://cdc@" + closed + "/cdc?sslmode=disable"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			cfg := e.config("", e.dir)
			cfg.Transforms.Dir = e.tdir
			tc.cfg(&cfg)
			vr := e.runVerify(cfg, "--connect-timeout", "3s")
			if vr.code == 0 {
				t.Fatalf("verify exited 0 with %s unreachable:\n%s", tc.name, vr)
			}
			if vr.took > 20*time.Second {
				t.Fatalf("verify took %s to give up on %s", vr.took, tc.name)
			}
			if !strings.Contains(vr.stderr, tc.want) {
				t.Fatalf("stderr does not say %q:\n%s", tc.want, vr)
			}
			if vr.rep == nil || vr.rep.OK || len(vr.rep.Errors) != 1 || vr.rep.Errors[0].System != tc.system || vr.rep.Totals.Passed != 0 {
				t.Fatalf("the JSON report does not name %s as unreachable:\n%s", tc.system, vr)
			}
		})
	}
}

// TestVerifyOutageMidRun: a database lost while verify runs (here while
// it waits for a sink that is not running to apply a document) ends the
// run at once with a non-zero exit naming the database; never a pass.
func TestVerifyOutageMidRun(t *testing.T) {
	e := newEnv(t)
	// No replicator runs: this document never reaches Postgres, so verify
	// waits up to --recheck-wait for the sink.
	_, err := e.client.Database(e.dbName).Collection("widgets").InsertOne(e.ctx, newLoad(e, 5).doc("widgets", bson.NewObjectID(), 1))
	must(t, err)
	cfg := e.config("", e.dir)
	// The driver gives up on an unreachable server after
	// serverSelectionTimeoutMS (30s by default; 3s keeps the test short).
	sep := "?"
	if strings.Contains(cfg.Mongo.URI, "?") {
		sep = "&"
	}
	cfg.Mongo.URI += sep + "serverSelectionTimeoutMS=3000"
	for _, tc := range []struct {
		name, system, want string
		stop, start        func()
	}{
		{"postgresql", verify.SystemPostgres, "PostgreSQL unreachable",
			func() { must(t, pgtestShared().Stop(e.ctx)) }, func() { must(t, pgtestShared().StartAgain(e.ctx)) }},
		{"mongodb", verify.SystemMongo, "MongoDB unreachable", e.stopMongo, e.restartMongo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			path := e.writeConfig(cfg)
			cmd := exec.Command(cdcBinary, "verify", "-c", path, "--json", "--progress", "none", "--recheck-wait", "60s")
			cmd.Env = cleanEnv()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			must(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			time.Sleep(1500 * time.Millisecond)
			select {
			case err := <-done:
				t.Fatalf("verify ended before the outage (%v):\n%s", err, stdout.String())
			default:
			}
			stopped := time.Now()
			tc.stop()
			var werr error
			select {
			case werr = <-done:
			case <-time.After(45 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				tc.start()
				t.Fatalf("verify still running 45s after %s went away", tc.name)
			}
			took := time.Since(stopped)
			tc.start()
			vr := verifyRun{stdout: stdout.String(), stderr: stderr.String(), took: took}
			var ee *exec.ExitError
			if !errors.As(werr, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("verify did not fail when %s went away (%v):\n%s", tc.name, werr, vr)
			}
			vr.code = ee.ExitCode()
			if !strings.Contains(vr.stderr, tc.want) {
				t.Fatalf("stderr does not say %q:\n%s", tc.want, vr)
			}
			var rep verify.Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep.OK || len(rep.Errors) == 0 || rep.Errors[0].System != tc.system {
				t.Fatalf("the JSON report does not name %s (%v):\n%s", tc.system, err, vr)
			}
			t.Logf("%s lost mid-run: verify exited %d after %s", tc.name, vr.code, took.Round(time.Millisecond))
		})
	}
}

// stopMongo makes MongoDB unreachable: the test server stops listening; a
// real replica set closes the connection of every find (failCommand, which
// needs --setParameter enableTestCommands=1).
func (e *env) stopMongo() {
	e.t.Helper()
	if e.srv != nil {
		e.srv.Stop()
		return
	}
	err := e.client.Database("admin").RunCommand(e.ctx, bson.D{
		{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: "alwaysOn"},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"find", "aggregate", "ping"}}, {Key: "closeConnection", Value: true},
			{Key: "appName", Value: "cdc"}}},
	}).Err()
	if err != nil {
		e.t.Fatalf("configureFailPoint (start mongod with --setParameter enableTestCommands=1): %v", err)
	}
}

func (e *env) restartMongo() {
	e.t.Helper()
	if e.srv != nil {
		must(e.t, e.srv.Restart())
		return
	}
	must(e.t, e.client.Database("admin").RunCommand(e.ctx, bson.D{
		{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "off"}}).Err())
}

// TestVerifyDuringLiveLoad: verify runs while the driver writes about
// 2,000 changes per second; it reports no mismatch (differences in flight
// are re-checked once the sink has caught up), and a real corruption made
// during the load is reported, alone.
func TestVerifyDuringLiveLoad(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	e.runApp(cfg, app.Options{})
	l := newLoad(e, 11)
	must(t, l.run(e.ctx, 6000))
	// A widget the load never touches, to corrupt during the load.
	sentinel := bson.NewObjectID()
	_, err := e.client.Database(e.dbName).Collection("widgets").InsertOne(e.ctx, l.doc("widgets", sentinel, 1))
	must(t, err)
	e.waitExact(time.Minute)

	// The load: 2,000 operations per second, paced in 10 ms steps, until
	// the verify runs are done (at most 20 s).
	const perSecond = 2000
	ctx, stop := context.WithTimeout(e.ctx, 20*time.Second)
	defer stop()
	pl := startPacedLoad(ctx, l, perSecond)
	ops, loadErr, loadStart := &pl.ops, pl.done, pl.start
	time.Sleep(time.Second)

	// Clean runs, full and sampled: nothing in flight may be reported.
	var rechecked int64
	for i, args := range [][]string{{}, {"--sample", "300"}, {}} {
		vr := e.runVerify(cfg, append([]string{"--recheck-wait", "20s", "--chunk-size", "100"}, args...)...)
		c := vr.check("widgets", "document_diff")
		t.Logf("verify %v during the load: %s, %d ops so far; widgets: %d compared, %d re-checked while in flight",
			args, vr.took.Round(time.Millisecond), ops.Load(), c.Counts["compared"], c.Counts["rechecked"])
		expectPass(t, vr)
		rechecked += c.Counts["rechecked"]
		if i == 1 {
			if c.Counts["compared"] < 250 || c.Counts["compared"] > 350 {
				t.Fatalf("--sample 300 compared %d widgets", c.Counts["compared"])
			}
		} else if c.Counts["compared"] < 1000 {
			t.Fatalf("only %d widgets compared", c.Counts["compared"])
		}
	}

	if rechecked == 0 {
		t.Fatal("no document was in flight during the verify runs: the load did not overlap them")
	}

	e.sqlBehind(false, `UPDATE widgets SET price = price + 0.000000000000000001
		WHERE id = (SELECT new_id FROM id_map WHERE collection = 'widgets' AND legacy_object_id = $1)`, sentinel.Hex())
	corrupt := e.runVerify(cfg, "--recheck-wait", "20s", "--chunk-size", "100")
	loadOps, loadTook := ops.Load(), time.Since(loadStart)
	stop()
	must(t, <-loadErr)
	rate := float64(loadOps) / loadTook.Seconds()
	t.Logf("verify with a corruption during the load: %s; load: %d ops in %s (%.0f/s)", corrupt.took.Round(time.Millisecond), loadOps, loadTook.Round(time.Millisecond), rate)
	expectCaught(t, corrupt, "widgets", "document_diff", sentinel.Hex(), "price")
	expectCaught(t, corrupt, "widgets", "money_sums", "", "price")
	expectFailingExactly(t, corrupt, "widgets/document_diff", "widgets/money_sums")
	if c := corrupt.check("widgets", "document_diff"); c.Mismatches != 1 {
		t.Fatalf("%d document mismatches, want only the corrupted widget: %+v", c.Mismatches, c.Examples)
	}
	ex := corrupt.check("widgets", "document_diff").Examples[0]
	mongoPrice, err1 := decimal.NewFromString(ex.Mongo)
	pgPrice, err2 := decimal.NewFromString(ex.Postgres)
	if err1 != nil || err2 != nil || !pgPrice.Sub(mongoPrice).Equal(decimal.New(1, -18)) {
		t.Fatalf("the corrupted price is not shown exactly: %+v", ex)
	}
	// The pacer asks for 2,000/s; a machine busy with other tests may
	// deliver less, but the load must have been real.
	if rate < 1000 {
		t.Fatalf("the load ran at %.0f changes/s, far from the ~2,000/s this test is about", rate)
	}
}
