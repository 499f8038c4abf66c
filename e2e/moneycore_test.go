package e2e

// End-to-end tests of the money-core transforms that ship in the binary
// (transforms.Builtin): every escrow collection through the whole pipeline
// (MongoDB -> tailer -> JetStream -> sink -> PostgreSQL) against the real
// migrated schema. The documents are the canonical examples of
// transforms/testdata, whose exact rows the golden tests pin; here they
// must land in Postgres, be updated, be deleted, and the bad ones must be
// dead-lettered with the field and the reason while their neighbours go
// on.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

// Legacy ids of the example documents (transforms/testdata).
const (
	mcBuyer    = "65f000000000000000000001"
	mcSeller   = "65f000000000000000000002"
	mcReferrer = "65f000000000000000000003"
	mcCatRoot  = "65f100000000000000000001"
	mcCatChild = "65f100000000000000000002"
	mcTemplate = "65f200000000000000000001"
	mcRequest  = "65f300000000000000000001"
	mcService  = "65f300000000000000000002"
	mcOffer    = "65f400000000000000000001"
	mcPayment  = "65f500000000000000000001"
	mcLedger   = "65f600000000000000000001"
	mcDest     = "65f700000000000000000001"
	mcTrezor   = "65f800000000000000000001"
	mcPoints   = "65f900000000000000000001"
)

// newMoneyEnv is an env whose replicator runs the built-in transforms
// against the fully migrated money-core schema (no test tables).
func newMoneyEnv(t *testing.T) *env {
	t.Helper()
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		t.Fatalf("built-in transforms: %v", err)
	}
	e := newBaseEnv(t, "cdc_money", set.Collections())
	e.tdir = "" // config(): Transforms.Dir "" loads transforms.Builtin
	return e
}

// startMoney runs the replicator (embedded NATS in the test) from now.
func (e *env) startMoney() {
	e.t.Helper()
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Transforms.Dir = ""
	cfg.Tailer.StartAt = e.startAt()
	e.runApp(cfg, app.Options{})
}

// example reads transforms/testdata/<coll>/<name>.json.
func (e *env) example(coll, name string) bson.D {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "transforms", "testdata", coll, name+".json"))
	must(e.t, err)
	var d bson.D
	must(e.t, bson.UnmarshalExtJSON(data, true, &d))
	return d
}

func mcOID(t testing.TB, hex string) bson.ObjectID {
	t.Helper()
	id, err := bson.ObjectIDFromHex(hex)
	must(t, err)
	return id
}

// mcGet returns the value of key in d, nil when absent.
func mcGet(d bson.D, key string) any {
	for _, el := range d {
		if el.Key == key {
			return el.Value
		}
	}
	return nil
}

// mcSet returns a copy of d with key set to v (appended when absent); a nil
// v removes the key.
func mcSet(d bson.D, key string, v any) bson.D {
	out := bson.D{}
	found := false
	for _, el := range d {
		if el.Key == key {
			found = true
			if v != nil {
				out = append(out, bson.E{Key: key, Value: v})
			}
			continue
		}
		out = append(out, el)
	}
	if !found && v != nil {
		out = append(out, bson.E{Key: key, Value: v})
	}
	return out
}

func (e *env) coll(name string) *mongo.Collection {
	return e.client.Database(e.dbName).Collection(name)
}

func (e *env) mcInsert(coll string, d bson.D) {
	e.t.Helper()
	if _, err := e.coll(coll).InsertOne(e.ctx, d); err != nil {
		e.t.Fatalf("insert into %s: %v", coll, err)
	}
}

func (e *env) mcUpdate(coll, hex string, update bson.D) {
	e.t.Helper()
	res, err := e.coll(coll).UpdateByID(e.ctx, mcOID(e.t, hex), update)
	if err != nil || res.MatchedCount != 1 {
		e.t.Fatalf("update %s %s: %v (matched %v)", coll, hex, err, res)
	}
}

func (e *env) mcDelete(coll, hex string) {
	e.t.Helper()
	res, err := e.coll(coll).DeleteOne(e.ctx, bson.D{{Key: "_id", Value: mcOID(e.t, hex)}})
	if err != nil || res.DeletedCount != 1 {
		e.t.Fatalf("delete %s %s: %v (deleted %v)", coll, hex, err, res)
	}
}

// mcEventually polls check until it returns "" or timeout passes, then
// fails with its last answer.
func (e *env) mcEventually(what string, check func() string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := check()
		if got == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within 30s: %s%s", what, got, e.mcDeadLetterSummary())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) mcDeadLetterSummary() string {
	rows, err := e.pool.Query(e.ctx, `SELECT collection, doc_key, error_class, coalesce(field, ''), reason FROM cdc.dead_letters ORDER BY id`)
	if err != nil {
		return "\n(dead letters unreadable: " + err.Error() + ")"
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c, k, cl, f, r string
		if rows.Scan(&c, &k, &cl, &f, &r) == nil {
			out = append(out, fmt.Sprintf("  %s %s [%s] %s: %s", c, k, cl, f, r))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "\ndead letters:\n" + strings.Join(out, "\n")
}

// mcUUID is the id_map uuid of a legacy id ("" when unmapped).
func (e *env) mcUUID(coll, hex string) string {
	e.t.Helper()
	var id string
	err := e.pool.QueryRow(e.ctx, `SELECT new_id::text FROM id_map WHERE collection = $1 AND legacy_object_id = $2`, coll, hex).Scan(&id)
	if err == pgx.ErrNoRows {
		return ""
	}
	must(e.t, err)
	return id
}

// mcRow is the row of table whose key column equals the id_map uuid of
// (coll, hex), as JSON values rendered to text (numeric exactly as stored,
// timestamps in UTC); nil when there is none.
func (e *env) mcRow(table, keyCol, coll, hex string) map[string]string {
	e.t.Helper()
	id := e.mcUUID(coll, hex)
	if id == "" {
		return nil
	}
	rows := e.mcRows(fmt.Sprintf(`SELECT to_jsonb(t)::text FROM %s t WHERE %s = $1::uuid`, pgx.Identifier{table}.Sanitize(), pgx.Identifier{keyCol}.Sanitize()), id)
	if len(rows) == 0 {
		return nil
	}
	return rows[0]
}

// mcRows runs a query returning one jsonb per row.
func (e *env) mcRows(sql string, args ...any) []map[string]string {
	e.t.Helper()
	if _, err := e.pool.Exec(e.ctx, `SET TIME ZONE 'UTC'`); err != nil {
		e.t.Fatal(err)
	}
	rows, err := e.pool.Query(e.ctx, sql, args...)
	must(e.t, err)
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		var js string
		must(e.t, rows.Scan(&js))
		dec := json.NewDecoder(strings.NewReader(js))
		dec.UseNumber()
		var m map[string]any
		must(e.t, dec.Decode(&m))
		r := map[string]string{}
		for k, v := range m {
			switch x := v.(type) {
			case nil:
				r[k] = "NULL"
			case string:
				r[k] = x
			default:
				b, _ := json.Marshal(x)
				r[k] = string(b)
			}
		}
		out = append(out, r)
	}
	must(e.t, rows.Err())
	return out
}

// mcRef stands for the id_map uuid of (coll, hex) in a wanted row; it is
// resolved when the row is compared, so a parent that arrives later is
// found.
func mcRef(coll, hex string) string { return "@id_map:" + coll + "/" + hex }

// mcDiff lists the columns of row that differ from want ("" if none).
func (e *env) mcDiff(row map[string]string, want map[string]string) string {
	if row == nil {
		return "no row"
	}
	var diffs []string
	for k, w := range want {
		if ref, ok := strings.CutPrefix(w, "@id_map:"); ok {
			coll, hex, _ := strings.Cut(ref, "/")
			if w = e.mcUUID(coll, hex); w == "" {
				w = "(uuid of " + ref + ", not mapped yet)"
			}
		}
		if g, ok := row[k]; !ok || g != w {
			diffs = append(diffs, fmt.Sprintf("%s = %q, want %q", k, g, w))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}

// mcExpectRow waits for the row of (coll, hex) to hold want.
func (e *env) mcExpectRow(table, coll, hex string, want map[string]string) {
	e.t.Helper()
	e.mcEventually(fmt.Sprintf("%s row of %s %s", table, coll, hex), func() string { return e.mcDiff(e.mcRow(table, "id", coll, hex), want) })
}

// mcExpectGone waits until (coll, hex) has no row in table (its id_map
// entry stays: ids are never re-minted).
func (e *env) mcExpectGone(table, coll, hex string) {
	e.t.Helper()
	e.mcEventually(fmt.Sprintf("%s row of %s %s deleted", table, coll, hex), func() string {
		if e.mcUUID(coll, hex) == "" {
			return "no id_map entry: the document never arrived"
		}
		if r := e.mcRow(table, "id", coll, hex); r != nil {
			return "row still there"
		}
		return ""
	})
}

// mcExpectDeadLetter waits for a dead letter of (coll, hex) with the class,
// field and a reason containing reason, and returns its count.
func (e *env) mcExpectDeadLetter(coll, hex, class, field, reason string) {
	e.t.Helper()
	e.mcEventually(fmt.Sprintf("dead letter of %s %s (%s %s: %s)", coll, hex, class, field, reason), func() string {
		rows := e.mcRows(`SELECT to_jsonb(d) - 'event' FROM cdc.dead_letters d WHERE collection = $1 AND doc_key = $2 ORDER BY id`, coll, hex)
		var seen []string
		for _, r := range rows {
			f := r["field"]
			if f == "NULL" {
				f = ""
			}
			if r["error_class"] == class && f == field && strings.Contains(r["reason"], reason) {
				return ""
			}
			seen = append(seen, fmt.Sprintf("[%s] %s: %s", r["error_class"], r["field"], r["reason"]))
		}
		return fmt.Sprintf("dead letters of the document: %v", seen)
	})
}

func (e *env) mcCount(sql string, args ...any) int {
	e.t.Helper()
	var n int
	must(e.t, e.pool.QueryRow(e.ctx, sql, args...).Scan(&n))
	return n
}

// TestMoneyCoreEndToEnd: every escrow collection through the whole
// pipeline with the built-in transforms: insert, update and delete with
// exact values and resolved references, the policies for missing parents,
// and the money rejections of the audit.
func TestMoneyCoreEndToEnd(t *testing.T) {
	e := newMoneyEnv(t)
	e.startMoney()
	var rnd = bson.NewObjectID().Hex // a legacy id nothing has

	t.Run("users", func(t *testing.T) {
		e.t = t
		// The referrer first: referredBy resolves through id_map.
		e.mcInsert("users", bson.D{{Key: "_id", Value: mcOID(t, mcReferrer)}, {Key: "email", Value: "ref@example.com"},
			{Key: "points", Value: bson.D{{Key: "available", Value: int32(0)}, {Key: "used", Value: int32(0)}, {Key: "total", Value: int32(0)}}},
			{Key: "createdAt", Value: bson.NewDateTimeFromTime(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC))}})
		e.mcInsert("users", e.example("users", "full"))
		e.mcInsert("users", e.example("users", "minimal"))
		e.mcExpectRow("users", "users", mcReferrer, map[string]string{"email": "ref@example.com", "created_at": "2024-03-01T00:00:00+00:00"})
		e.mcExpectRow("users", "users", mcBuyer, map[string]string{
			"email": "aigerim@example.kz", "telegram_id": "5012345678", "referred_by_id": mcRef("users", mcReferrer),
			"points_available": "120.500000000000000000", "points_used": "30.000000000000000000", "points_total": "150.500000000000000000",
			"profile": `{"bio":"Buyer from Almaty","city":"Алматы","lang":"ru"}`, "updated_at": "2024-03-20T08:15:00.123+00:00",
		})
		// minimal: no createdAt, the ObjectId's time stands in.
		e.mcExpectRow("users", "users", mcSeller, map[string]string{"first_name": "Seller", "telegram_id": "7000000001", "role": "user", "created_at": "2024-03-12T07:10:56+00:00"})

		e.mcUpdate("users", mcBuyer, bson.D{{Key: "$set", Value: bson.D{{Key: "firstName", Value: "Айгерим"}, {Key: "points.available", Value: dec128(t, "100.000000000000000001")}}}})
		e.mcExpectRow("users", "users", mcBuyer, map[string]string{"first_name": "Айгерим", "points_available": "100.000000000000000001"})

		tmp := bson.NewObjectID().Hex()
		e.mcInsert("users", bson.D{{Key: "_id", Value: mcOID(t, tmp)}, {Key: "points", Value: bson.D{{Key: "available", Value: 1}, {Key: "used", Value: 0}, {Key: "total", Value: 1}}}})
		e.mcExpectRow("users", "users", tmp, map[string]string{"points_total": "1.000000000000000000"})
		e.mcDelete("users", tmp)
		e.mcExpectGone("users", "users", tmp)
	})

	t.Run("categories", func(t *testing.T) {
		e.t = t
		e.mcInsert("categories", e.example("categories", "root"))
		e.mcInsert("categories", e.example("categories", "child"))
		e.mcExpectRow("categories", "categories", mcCatRoot, map[string]string{"name": "Electronics", "parent_id": "NULL", "metadata": `{"featured":true}`})
		e.mcExpectRow("categories", "categories", mcCatChild, map[string]string{"name": "Phones", "parent_id": mcRef("categories", mcCatRoot)})
		if n := e.mcCount(`SELECT count(*) FROM cdc.dangling_refs WHERE collection = 'categories'`); n != 0 {
			t.Fatalf("a root category (parentId \"\") was recorded as a dangling reference (%d rows)", n)
		}
		e.mcUpdate("categories", mcCatChild, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "Smartphones"}, {Key: "sortOrder", Value: int32(5)}}}})
		e.mcExpectRow("categories", "categories", mcCatChild, map[string]string{"name": "Smartphones", "sort_order": "5"})
		tmp := bson.NewObjectID().Hex()
		e.mcInsert("categories", bson.D{{Key: "_id", Value: mcOID(t, tmp)}, {Key: "name", Value: "Temporary"}, {Key: "parentId", Value: mcCatRoot}})
		e.mcExpectRow("categories", "categories", tmp, map[string]string{"parent_id": mcRef("categories", mcCatRoot)})
		e.mcDelete("categories", tmp)
		e.mcExpectGone("categories", "categories", tmp)
	})

	t.Run("requestTemplates", func(t *testing.T) {
		e.t = t
		e.mcInsert("requestTemplates", e.example("requestTemplates", "full"))
		e.mcExpectRow("request_templates", "requestTemplates", mcTemplate, map[string]string{
			"seller_id": mcRef("users", mcSeller), "category_id": mcRef("categories", mcCatChild),
			"budget": "1150.000000000000000000", "budget_currency": "USD", "proposal_price": "1099.990000000000000000",
			"proposal_currency": "USDT", "tags": `["apple","iphone","dubai"]`, "usage_count": "3", "max_usage": "10",
		})
		e.mcUpdate("requestTemplates", mcTemplate, bson.D{{Key: "$inc", Value: bson.D{{Key: "usageCount", Value: int32(1)}}}})
		e.mcExpectRow("request_templates", "requestTemplates", mcTemplate, map[string]string{"usage_count": "4"})
		min := e.example("requestTemplates", "minimal")
		e.mcInsert("requestTemplates", min)
		e.mcExpectRow("request_templates", "requestTemplates", "65f200000000000000000002", map[string]string{"proposal_price": "25.500000000000000000", "tags": "[]"})
		e.mcDelete("requestTemplates", "65f200000000000000000002")
		e.mcExpectGone("request_templates", "requestTemplates", "65f200000000000000000002")
	})

	t.Run("purchaseRequests", func(t *testing.T) {
		e.t = t
		// The app creates the request before any offer: no selectedOfferId
		// yet (set below, after the offer exists).
		pr := mcSet(e.example("purchaseRequests", "full"), "selectedOfferId", nil)
		pr = mcSet(pr, "preferredSellers", bson.A{mcOID(t, mcSeller), mcOID(t, mcSeller)})
		e.mcInsert("purchaseRequests", pr)
		e.mcExpectRow("purchase_requests", "purchaseRequests", mcRequest, map[string]string{
			"buyer_id": mcRef("users", mcBuyer), "category_id": mcRef("categories", mcCatChild),
			"template_id": mcRef("requestTemplates", mcTemplate), "selected_offer_id": "NULL",
			"budget": "1150.000000000000000000", "status": "in_progress", "escrow_state": "held", "tags": `["apple","iphone"]`,
		})
		e.mcUpdate("purchaseRequests", mcRequest, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "shipped"}, {Key: "budget", Value: dec128(t, "1200.5")}}}})
		e.mcExpectRow("purchase_requests", "purchaseRequests", mcRequest, map[string]string{"status": "shipped", "budget": "1200.500000000000000000"})

		e.mcInsert("purchaseRequests", e.example("purchaseRequests", "service"))
		e.mcExpectRow("purchase_requests", "purchaseRequests", mcService, map[string]string{"is_service": "true", "budget": "80.100000000000000000", "budget_currency": "EUR"})
		e.mcDelete("purchaseRequests", mcService)
		e.mcExpectGone("purchase_requests", "purchaseRequests", mcService)
	})

	t.Run("sellerOffers", func(t *testing.T) {
		e.t = t
		e.mcInsert("sellerOffers", e.example("sellerOffers", "full"))
		e.mcExpectRow("seller_offers", "sellerOffers", mcOffer, map[string]string{
			"purchase_request_id": mcRef("purchaseRequests", mcRequest), "seller_id": mcRef("users", mcSeller),
			"template_id": mcRef("requestTemplates", mcTemplate), "price_amount": "1099.990000000000000000", "price_currency": "USDT", "status": "accepted",
		})
		// The accepted offer goes back onto the request.
		e.mcUpdate("purchaseRequests", mcRequest, bson.D{{Key: "$set", Value: bson.D{{Key: "selectedOfferId", Value: mcOID(t, mcOffer)}}}})
		e.mcExpectRow("purchase_requests", "purchaseRequests", mcRequest, map[string]string{"selected_offer_id": mcRef("sellerOffers", mcOffer)})
		e.mcUpdate("sellerOffers", mcOffer, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "completed"}, {Key: "price.amount", Value: 1099.5}}}})
		e.mcExpectRow("seller_offers", "sellerOffers", mcOffer, map[string]string{"status": "completed", "price_amount": "1099.500000000000000000"})
		dbl := "65f400000000000000000002"
		e.mcInsert("sellerOffers", e.example("sellerOffers", "double_price"))
		e.mcExpectRow("seller_offers", "sellerOffers", dbl, map[string]string{"price_amount": "19.990000000000000000"})
		e.mcDelete("sellerOffers", dbl)
		e.mcExpectGone("seller_offers", "sellerOffers", dbl)
	})

	t.Run("payments", func(t *testing.T) {
		e.t = t
		e.mcInsert("payments", e.example("payments", "request_network"))
		e.mcExpectRow("payments", "payments", mcPayment, map[string]string{
			"purchase_request_id": mcRef("purchaseRequests", mcRequest), "seller_offer_id": mcRef("sellerOffers", mcOffer),
			"buyer_id": mcRef("users", mcBuyer), "provider": "request_network", "direction": "in", "status": "completed",
			"amount": "1099.990000000000000000", "chain_id": "137", "is_template_checkout": "true",
			"rn_request_id": "01e273ecc29d4b526df3a0f1f05ffc59372af8752c2b678096e49ac270416a7cdb",
			// metadata.sellerId is a random ObjectId (createPaymentRecord):
			// policy null stores NULL and records it.
			"seller_id": "NULL",
		})
		e.mcEventually("dangling metadata.sellerId recorded", func() string {
			n := e.mcCount(`SELECT count(*) FROM cdc.dangling_refs WHERE collection = 'payments' AND doc_key = $1
				AND column_name = 'seller_id' AND ref_collection = 'users' AND ref_legacy_id = '65f0ffffffffffffffffff99'`, mcPayment)
			if n != 1 {
				return fmt.Sprintf("%d cdc.dangling_refs rows", n)
			}
			return ""
		})
		e.mcUpdate("payments", mcPayment, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "refunded"}, {Key: "disputed", Value: true}, {Key: "refundedAt", Value: time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)}}}})
		e.mcExpectRow("payments", "payments", mcPayment, map[string]string{"status": "refunded", "disputed": "true", "refunded_at": "2024-04-01T00:00:00+00:00"})
		tmp := "65f500000000000000000002"
		e.mcInsert("payments", e.example("payments", "trezor_minimal"))
		e.mcExpectRow("payments", "payments", tmp, map[string]string{"provider": "trezor", "amount": "0.100000000000000000", "metadata": "{}"})
		e.mcDelete("payments", tmp)
		e.mcExpectGone("payments", "payments", tmp)
	})

	t.Run("payment amount NULL is dead-lettered naming amount (CR-4)", func(t *testing.T) {
		e.t = t
		e.mcInsert("payments", e.example("payments", "null_amount"))
		e.mcExpectDeadLetter("payments", "65f500000000000000000003", "rejected", "amount", "required field is missing or null")
		if e.mcUUID("payments", "65f500000000000000000003") != "" && e.mcRow("payments", "id", "payments", "65f500000000000000000003") != nil {
			t.Fatal("a payment with a NULL amount was stored")
		}
	})

	t.Run("negative payment amount is dead-lettered", func(t *testing.T) {
		e.t = t
		e.mcInsert("payments", e.example("payments", "negative_amount"))
		e.mcExpectDeadLetter("payments", "65f500000000000000000004", "rejected", "amount", "must be greater than 0")
		e.mcInsert("payments", e.example("payments", "nan_amount"))
		e.mcExpectDeadLetter("payments", "65f500000000000000000005", "rejected", "amount", "NaN is not an amount")
		e.mcInsert("payments", e.example("payments", "unknown_provider"))
		e.mcExpectDeadLetter("payments", "65f500000000000000000007", "rejected", "provider", `unknown enum value "paypal"`)
	})

	t.Run("fundsLedger is append-only", func(t *testing.T) {
		e.t = t
		e.mcInsert("fundsLedger", e.example("fundsLedger", "hold"))
		want := map[string]string{
			"entry_type": "hold", "amount": "1099.990000000000000000", "purchase_request_id": mcRef("purchaseRequests", mcRequest),
			"payment_id": mcRef("payments", mcPayment), "user_id": mcRef("users", mcBuyer), "idempotency_key": "pay:65f500000000000000000001:hold",
		}
		e.mcExpectRow("funds_ledger_entries", "fundsLedger", mcLedger, want)
		e.mcUpdate("fundsLedger", mcLedger, bson.D{{Key: "$set", Value: bson.D{{Key: "amount", Value: dec128(t, "1")}}}})
		e.mcExpectDeadLetter("fundsLedger", mcLedger, "violation", "", "append-only violation")
		e.mcDelete("fundsLedger", mcLedger)
		e.mcEventually("ledger delete dead-lettered", func() string {
			if n := e.mcCount(`SELECT count(*) FROM cdc.dead_letters WHERE collection = 'fundsLedger' AND doc_key = $1`, mcLedger); n < 2 {
				return fmt.Sprintf("%d dead letters of the entry, want the update and the delete", n)
			}
			return ""
		})
		e.mcExpectRow("funds_ledger_entries", "fundsLedger", mcLedger, want) // unchanged, still there
		e.mcInsert("fundsLedger", e.example("fundsLedger", "missing_entry_type"))
		e.mcExpectDeadLetter("fundsLedger", "65f600000000000000000002", "rejected", "entryType", "required field is missing or null")
	})

	t.Run("reject policy: ledger entry booking a payment that does not exist", func(t *testing.T) {
		e.t = t
		id := bson.NewObjectID().Hex()
		missing := rnd()
		d := mcSet(e.example("fundsLedger", "hold"), "_id", mcOID(t, id))
		d = mcSet(d, "paymentId", mcOID(t, missing))
		d = mcSet(d, "idempotencyKey", "reject-policy")
		e.mcInsert("fundsLedger", d)
		e.mcExpectDeadLetter("fundsLedger", id, "rejected", "paymentId", "references payments "+missing)
		e.mcExpectDeadLetter("fundsLedger", id, "rejected", "paymentId", "(policy reject)")
	})

	t.Run("null policy: unknown referrer", func(t *testing.T) {
		e.t = t
		id, missing := bson.NewObjectID().Hex(), rnd()
		e.mcInsert("users", bson.D{{Key: "_id", Value: mcOID(t, id)}, {Key: "referredBy", Value: mcOID(t, missing)},
			{Key: "points", Value: bson.D{{Key: "available", Value: 0}, {Key: "used", Value: 0}, {Key: "total", Value: 0}}}})
		e.mcExpectRow("users", "users", id, map[string]string{"referred_by_id": "NULL"})
		if n := e.mcCount(`SELECT count(*) FROM cdc.dangling_refs WHERE collection = 'users' AND doc_key = $1 AND column_name = 'referred_by_id' AND ref_legacy_id = $2`, id, missing); n != 1 {
			t.Fatalf("%d dangling_refs rows for the unknown referrer", n)
		}
	})

	t.Run("derivedDestinations", func(t *testing.T) {
		e.t = t
		e.mcInsert("derivedDestinations", e.example("derivedDestinations", "full"))
		e.mcExpectRow("derived_destinations", "derivedDestinations", mcDest, map[string]string{
			"buyer_id": mcRef("users", mcBuyer), "seller_offer_id": mcRef("sellerOffers", mcOffer), "chain_id": "1",
			"expected_amount":    "1099.990000000000000000",
			"last_known_balance": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
		})
		e.mcUpdate("derivedDestinations", mcDest, bson.D{{Key: "$set", Value: bson.D{{Key: "lastKnownBalance", Value: "0"}, {Key: "status", Value: "drained"}}}})
		e.mcExpectRow("derived_destinations", "derivedDestinations", mcDest, map[string]string{"last_known_balance": "0", "status": "drained"})
		min := "65f700000000000000000002"
		e.mcInsert("derivedDestinations", e.example("derivedDestinations", "minimal"))
		e.mcExpectRow("derived_destinations", "derivedDestinations", min, map[string]string{"chain_id": "137", "last_known_balance": "0"})
		e.mcDelete("derivedDestinations", min)
		e.mcExpectGone("derived_destinations", "derivedDestinations", min)
	})

	t.Run("trezorAccounts", func(t *testing.T) {
		e.t = t
		// The second address has no payment: the example's first address
		// books the refunded payment above.
		e.mcInsert("trezorAccounts", e.example("trezorAccounts", "full"))
		e.mcExpectRow("trezor_accounts", "trezorAccounts", mcTrezor, map[string]string{"user_id": mcRef("users", mcSeller), "next_address_index": "2", "chain_id": "1"})
		e.mcUpdate("trezorAccounts", mcTrezor, bson.D{{Key: "$push", Value: bson.D{{Key: "addresses", Value: bson.D{
			{Key: "address", Value: "0x8888888888888888888888888888888888888888"}, {Key: "index", Value: int32(7)}, {Key: "path", Value: "m/44'/60'/0'/0/7"}}}}}})
		e.mcExpectRow("trezor_accounts", "trezorAccounts", mcTrezor, map[string]string{"next_address_index": "8"})
		tmp := "65f800000000000000000002"
		e.mcInsert("trezorAccounts", e.example("trezorAccounts", "no_addresses"))
		e.mcExpectRow("trezor_accounts", "trezorAccounts", tmp, map[string]string{"next_address_index": "0", "xpub": "xpub-empty"})
		e.mcDelete("trezorAccounts", tmp)
		e.mcExpectGone("trezor_accounts", "trezorAccounts", tmp)
	})

	t.Run("pointTransactions", func(t *testing.T) {
		e.t = t
		e.mcInsert("pointTransactions", e.example("pointTransactions", "referral"))
		e.mcExpectRow("point_transactions", "pointTransactions", mcPoints, map[string]string{
			"user_id": mcRef("users", mcReferrer), "referred_user_id": mcRef("users", mcBuyer),
			"purchase_request_id": mcRef("purchaseRequests", mcRequest), "type": "referral_bonus",
			"amount": "10.995000000000000000", "balance": "150.500000000000000000",
		})
		e.mcUpdate("pointTransactions", mcPoints, bson.D{{Key: "$set", Value: bson.D{{Key: "description", Value: "corrected"}}}})
		e.mcExpectRow("point_transactions", "pointTransactions", mcPoints, map[string]string{"description": "corrected"})
		spent := "65f900000000000000000002"
		e.mcInsert("pointTransactions", e.example("pointTransactions", "spent"))
		e.mcExpectRow("point_transactions", "pointTransactions", spent, map[string]string{"amount": "-30.000000000000000000"})
		e.mcDelete("pointTransactions", spent)
		e.mcExpectGone("point_transactions", "pointTransactions", spent)
		e.mcInsert("pointTransactions", e.example("pointTransactions", "zero_amount"))
		e.mcExpectDeadLetter("pointTransactions", "65f900000000000000000003", "rejected", "amount", "must not be 0")
	})

	t.Run("bad documents do not stop their neighbours", func(t *testing.T) {
		e.t = t
		good := bson.NewObjectID().Hex()
		e.mcInsert("payments", mcSet(e.example("payments", "too_precise_amount"), "_id", mcOID(t, bson.NewObjectID().Hex())))
		e.mcInsert("categories", bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "name", Value: bson.D{{Key: "$numberDecimal", Value: "5"}}}})
		e.mcInsert("users", bson.D{{Key: "_id", Value: mcOID(t, good)}, {Key: "email", Value: "after-the-bad-ones@example.com\u2028\t\x01"},
			{Key: "points", Value: bson.D{{Key: "available", Value: 1.5}, {Key: "used", Value: 0}, {Key: "total", Value: 1.5}}}})
		e.mcExpectRow("users", "users", good, map[string]string{"email": "after-the-bad-ones@example.com\u2028\t\x01", "points_available": "1.500000000000000000"})
		e.mcEventually("both bad documents dead-lettered", func() string {
			n := e.mcCount(`SELECT count(*) FROM cdc.dead_letters WHERE (collection = 'payments' AND field = 'amount' AND reason LIKE '%fractional digits%')
				OR (collection = 'categories' AND field = 'name' AND reason LIKE 'expected a string, got document%')`)
			if n != 2 {
				return fmt.Sprintf("%d of 2", n)
			}
			return ""
		})
	})
}

func dec128(t *testing.T, s string) bson.Decimal128 {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	must(t, err)
	return d
}

// TestMoneyCoreChildTablesAndWaiting: child tables replaced whole on every
// version of the parent (sub-document ids minted once through id_map and
// kept), removed with a hard-deleted parent; a child whose parent arrives
// later (policy wait, in one Mongo transaction or not) ends correct. (The
// null policy's fill-in is TestMoneyCoreNullFillIn.)
func TestMoneyCoreChildTablesAndWaiting(t *testing.T) {
	e := newMoneyEnv(t)
	e.startMoney()
	for _, u := range []bson.D{
		e.example("users", "minimal"), // the seller
		mcSet(mcSet(e.example("users", "full"), "referredBy", nil), "email", "buyer@example.com"),
	} {
		e.mcInsert("users", u)
	}
	e.mcExpectRow("users", "users", mcBuyer, map[string]string{"email": "buyer@example.com"})
	e.mcExpectRow("users", "users", mcSeller, map[string]string{"first_name": "Seller"})

	t.Run("purchase request child tables", func(t *testing.T) {
		e.t = t
		pr := mcSet(e.example("purchaseRequests", "full"), "selectedOfferId", nil)
		pr = mcSet(mcSet(pr, "templateId", nil), "categoryId", nil)
		pr = mcSet(pr, "preferredSellers", bson.A{mcOID(t, mcSeller), mcOID(t, mcBuyer), mcOID(t, mcSeller)})
		e.mcInsert("purchaseRequests", pr)
		prID := func() string { return e.mcUUID("purchaseRequests", mcRequest) }
		e.mcExpectRow("purchase_requests", "purchaseRequests", mcRequest, map[string]string{"title": "iPhone 15 Pro 256GB"})
		a1, a2 := "65f3a0000000000000000001", "65f3a0000000000000000002"
		e.mcEventually("child tables of the request", func() string {
			id := prID()
			return mcJoin(
				e.mcDiff(e.mcOne(`SELECT to_jsonb(t) FROM purchase_request_delivery_info t WHERE purchase_request_id = $1`, id),
					map[string]string{"id": id, "status": "in_transit", "carrier": "CDEK", "shipped_at": "2024-03-21T12:00:00+00:00"}),
				e.mcDiff(e.mcOne(`SELECT to_jsonb(t) FROM purchase_request_delivery_address t WHERE delivery_info_id = $1`, id),
					map[string]string{"city": "Алматы", "full_name": "Айгерим Нурлановна", "postal_code": "050000"}),
				e.mcDiff(e.mcOne(`SELECT jsonb_agg(t.id ORDER BY attempt_number) FROM delivery_attempts t WHERE delivery_info_id = $1`, id, "ids"),
					map[string]string{"ids": fmt.Sprintf(`["%s","%s"]`, e.mcUUID("purchaseRequests.deliveryInfo.attempts", a1), e.mcUUID("purchaseRequests.deliveryInfo.attempts", a2))}),
				e.mcDiff(e.mcOne(`SELECT to_jsonb(t) FROM delivery_attempts t WHERE delivery_info_id = $1 AND attempt_number = 1`, id),
					map[string]string{"status": "failed", "seller_id": mcRef("users", mcSeller), "failure_reason": "Nobody home", "attempted_at": "2024-03-25T09:00:00+00:00"}),
				e.mcDiff(e.mcOne(`SELECT to_jsonb(t) FROM purchase_request_seller_delivery_info t WHERE purchase_request_id = $1`, id),
					map[string]string{"proof_urls": `["https://cdn.example.com/p/1.jpg"]`, "notes": "Insured"}),
				e.mcDiff(e.mcOne(`SELECT jsonb_agg(name || '=' || coalesce(value, 'NULL') ORDER BY ordinal) AS specs FROM purchase_request_specifications WHERE purchase_request_id = $1`, id, "specs"),
					map[string]string{"specs": `["Storage=256GB","Color=Natural Titanium","SIM=NULL"]`}),
				e.mcDiff(e.mcOne(`SELECT jsonb_agg(seller_id ORDER BY seller_id) AS s FROM purchase_request_preferred_sellers WHERE purchase_request_id = $1`, id, "s"),
					map[string]string{"s": mcSortedJSON(e.mcUUID("users", mcSeller), e.mcUUID("users", mcBuyer))}),
			)
		})
		attemptIDs := []string{e.mcUUID("purchaseRequests.deliveryInfo.attempts", a1), e.mcUUID("purchaseRequests.deliveryInfo.attempts", a2)}

		// A new version replaces every set: fewer specifications, no
		// address, one more attempt (the first two keep their ids), no
		// seller delivery info.
		a3 := bson.NewObjectID()
		e.mcUpdate("purchaseRequests", mcRequest, bson.D{
			{Key: "$set", Value: bson.D{{Key: "specifications", Value: bson.A{bson.D{{Key: "name", Value: "Storage"}, {Key: "value", Value: "512GB"}}}}}},
			{Key: "$unset", Value: bson.D{{Key: "deliveryInfo.address", Value: ""}, {Key: "sellerDeliveryInfo", Value: ""}}},
			{Key: "$push", Value: bson.D{{Key: "deliveryInfo.attempts", Value: bson.D{{Key: "_id", Value: a3}, {Key: "attemptNumber", Value: int32(3)},
				{Key: "status", Value: "delivered"}, {Key: "attemptedAt", Value: time.Date(2024, 3, 27, 9, 0, 0, 0, time.UTC)}}}}},
		})
		e.mcEventually("child sets replaced", func() string {
			id := prID()
			return mcJoin(
				mcCountIs(e, `SELECT count(*) FROM purchase_request_delivery_address WHERE delivery_info_id = $1`, 0, id),
				mcCountIs(e, `SELECT count(*) FROM purchase_request_seller_delivery_info WHERE purchase_request_id = $1`, 0, id),
				e.mcDiff(e.mcOne(`SELECT jsonb_agg(name || '=' || value ORDER BY ordinal) AS specs FROM purchase_request_specifications WHERE purchase_request_id = $1`, id, "specs"),
					map[string]string{"specs": `["Storage=512GB"]`}),
				e.mcDiff(e.mcOne(`SELECT jsonb_agg(t.id ORDER BY attempt_number) FROM delivery_attempts t WHERE delivery_info_id = $1`, id, "ids"),
					map[string]string{"ids": fmt.Sprintf(`["%s","%s","%s"]`, attemptIDs[0], attemptIDs[1], e.mcUUID("purchaseRequests.deliveryInfo.attempts", a3.Hex()))}),
			)
		})

		// A hard delete of the request takes every child row with it.
		id := prID()
		e.mcDelete("purchaseRequests", mcRequest)
		e.mcExpectGone("purchase_requests", "purchaseRequests", mcRequest)
		for _, q := range []string{
			`SELECT count(*) FROM purchase_request_delivery_info WHERE purchase_request_id = $1`,
			`SELECT count(*) FROM delivery_attempts WHERE delivery_info_id = $1`,
			`SELECT count(*) FROM purchase_request_specifications WHERE purchase_request_id = $1`,
			`SELECT count(*) FROM purchase_request_preferred_sellers WHERE purchase_request_id = $1`,
		} {
			if n := e.mcCount(q, id); n != 0 {
				t.Errorf("%d rows left: %s", n, q)
			}
		}
	})

	t.Run("derived destination sweeps", func(t *testing.T) {
		e.t = t
		d := mcSet(mcSet(mcSet(e.example("derivedDestinations", "full"), "sellerOfferId", nil), "buyerId", nil), "sellerId", nil)
		e.mcInsert("derivedDestinations", d)
		s1 := "65f7a0000000000000000001"
		e.mcEventually("sweep row", func() string {
			return e.mcDiff(e.mcRow("derived_destination_sweeps", "id", "derivedDestinations.sweeps", s1),
				map[string]string{"destination_id": mcRef("derivedDestinations", mcDest), "amount": "1099990000", "gas_price": "31000000000", "status": "confirmed"})
		})
		first := e.mcUUID("derivedDestinations.sweeps", s1)
		s2 := bson.NewObjectID()
		e.mcUpdate("derivedDestinations", mcDest, bson.D{{Key: "$push", Value: bson.D{{Key: "sweeps", Value: bson.D{{Key: "_id", Value: s2},
			{Key: "amount", Value: "115792089237316195423570985008687907853269984665640564039457584007913129639935"}, {Key: "status", Value: "pending"}}}}}})
		e.mcEventually("second sweep, first keeps its id", func() string {
			return mcJoin(
				e.mcDiff(e.mcRow("derived_destination_sweeps", "id", "derivedDestinations.sweeps", s2.Hex()),
					map[string]string{"amount": "115792089237316195423570985008687907853269984665640564039457584007913129639935", "status": "pending"}),
				mcCountIs(e, `SELECT count(*) FROM derived_destination_sweeps WHERE id = $1::uuid`, 1, first),
			)
		})
		e.mcDelete("derivedDestinations", mcDest)
		e.mcExpectGone("derived_destinations", "derivedDestinations", mcDest)
		if n := e.mcCount(`SELECT count(*) FROM derived_destination_sweeps`); n != 0 {
			t.Fatalf("%d sweeps left after their destination was deleted", n)
		}
	})

	t.Run("trezor derived addresses", func(t *testing.T) {
		e.t = t
		acc := e.example("trezorAccounts", "full")
		addrs := mcGet(acc, "addresses").(bson.A)
		first := addrs[0].(bson.D)
		first = mcSet(first, "paymentId", nil)
		acc = mcSet(acc, "addresses", bson.A{first, addrs[1]})
		e.mcInsert("trezorAccounts", acc)
		e.mcEventually("addresses", func() string {
			return e.mcDiff(e.mcOne(`SELECT jsonb_agg(address || '@' || derivation_index ORDER BY ordinal) AS a FROM trezor_derived_addresses WHERE trezor_account_id = $1`, e.mcUUID("trezorAccounts", mcTrezor), "a"),
				map[string]string{"a": `["0x6666666666666666666666666666666666666666@0","0x7777777777777777777777777777777777777777@1"]`})
		})
		e.mcUpdate("trezorAccounts", mcTrezor, bson.D{{Key: "$pop", Value: bson.D{{Key: "addresses", Value: int32(-1)}}}})
		e.mcEventually("first address removed, ordinals renumbered", func() string {
			return e.mcDiff(e.mcOne(`SELECT jsonb_agg(address || '@' || ordinal ORDER BY ordinal) AS a FROM trezor_derived_addresses WHERE trezor_account_id = $1`, e.mcUUID("trezorAccounts", mcTrezor), "a"),
				map[string]string{"a": `["0x7777777777777777777777777777777777777777@0"]`})
		})
		e.mcDelete("trezorAccounts", mcTrezor)
		e.mcExpectGone("trezor_accounts", "trezorAccounts", mcTrezor)
		if n := e.mcCount(`SELECT count(*) FROM trezor_derived_addresses`); n != 0 {
			t.Fatalf("%d addresses left", n)
		}
	})

	t.Run("parent after child: wait", func(t *testing.T) {
		e.t = t
		user, pt := bson.NewObjectID(), bson.NewObjectID()
		e.mcInsert("pointTransactions", mcSet(mcSet(mcSet(mcSet(e.example("pointTransactions", "referral"), "_id", pt), "userId", user), "referredUser", nil), "order", nil))
		time.Sleep(2 * time.Second) // the sink sees the child alone
		e.mcInsert("users", bson.D{{Key: "_id", Value: user}, {Key: "points", Value: bson.D{{Key: "available", Value: 10}, {Key: "used", Value: 0}, {Key: "total", Value: 10}}}})
		e.mcExpectRow("point_transactions", "pointTransactions", pt.Hex(), map[string]string{"user_id": mcRef("users", user.Hex()), "amount": "10.995000000000000000"})
		if n := e.mcCount(`SELECT count(*) FROM cdc.dead_letters WHERE doc_key = $1`, pt.Hex()); n != 0 {
			t.Fatalf("the waiting child was dead-lettered (%d)", n)
		}
	})

	t.Run("child before parent in one Mongo transaction", func(t *testing.T) {
		e.t = t
		pr, so := bson.NewObjectID(), bson.NewObjectID()
		sess, err := e.client.StartSession()
		must(t, err)
		defer sess.EndSession(e.ctx)
		_, err = sess.WithTransaction(e.ctx, func(sc context.Context) (any, error) {
			offer := mcSet(mcSet(mcSet(e.example("sellerOffers", "full"), "_id", so), "purchaseRequestId", pr), "templateId", nil)
			if _, err := e.coll("sellerOffers").InsertOne(sc, offer); err != nil {
				return nil, err
			}
			req := mcSet(mcSet(e.example("purchaseRequests", "minimal"), "_id", pr), "title", "created with its offer")
			return e.coll("purchaseRequests").InsertOne(sc, req)
		})
		must(t, err)
		e.mcExpectRow("purchase_requests", "purchaseRequests", pr.Hex(), map[string]string{"title": "created with its offer"})
		e.mcExpectRow("seller_offers", "sellerOffers", so.Hex(), map[string]string{"purchase_request_id": mcRef("purchaseRequests", pr.Hex())})
	})
}

// mcOne runs a query returning one jsonb (named col when it is not a
// row) and returns it as a row map (nil when there is no row).
func (e *env) mcOne(sql string, arg any, col ...string) map[string]string {
	e.t.Helper()
	if arg == "" {
		return nil // the parent is not mapped yet
	}
	if len(col) > 0 {
		sql = fmt.Sprintf(`SELECT jsonb_build_object('%s', x) FROM (%s) AS q(x)`, col[0], sql)
	}
	rows := e.mcRows(sql, arg)
	if len(rows) == 0 {
		return nil
	}
	return rows[0]
}

func mcCountIs(e *env, sql string, want int, arg any) string {
	if arg == "" {
		return "the parent is not mapped yet"
	}
	if n := e.mcCount(sql, arg); n != want {
		return fmt.Sprintf("%d rows, want %d: %s", n, want, sql)
	}
	return ""
}

func mcJoin(problems ...string) string {
	var out []string
	for _, p := range problems {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n  ")
}

func mcSortedJSON(ids ...string) string {
	sort.Strings(ids)
	b, _ := json.Marshal(ids)
	return string(b)
}
