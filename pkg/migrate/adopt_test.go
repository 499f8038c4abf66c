package migrate_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from the current plans")

// appDB returns a fresh database holding the application's schema as its
// Drizzle migrations made it (testdata/app_schema.sql), changed by extra.
func appDB(t *testing.T, extra ...string) string {
	t.Helper()
	url := pgtest.NewDatabase(t)
	schema, err := os.ReadFile(filepath.Join("testdata", "app_schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, url)
	if _, err := conn.Exec(ctxT(t), string(schema)); err != nil {
		t.Fatalf("app schema: %v", err)
	}
	for _, sql := range extra {
		if _, err := conn.Exec(ctxT(t), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	return url
}

func builtinSet(t *testing.T) *transform.Set {
	t.Helper()
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func rowCount(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctxT(t), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// untouched checks that nothing of the replicator exists in the database:
// no schema cdc (so no version table), and the application's constraint
// count as the fixture made it.
func untouched(t *testing.T, conn *pgx.Conn, constraints int) {
	t.Helper()
	if n := rowCount(t, conn, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'cdc%'`); n != 0 {
		t.Fatalf("%d cdc schemas exist: the database was changed", n)
	}
	if n := rowCount(t, conn, `SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace`); n != constraints {
		t.Fatalf("public has %d constraints, want %d as before: the database was changed", n, constraints)
	}
}

// laterMigrations is the plan's line listing the migrations after the
// adopted ones: it grows with every migration added, so the golden file
// pins it without the list (TestAdoptAppSchema checks the list itself).
var laterMigrations = regexp.MustCompile(`(?m)^(  then the later migrations run as usual) \(.*$`)

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with go test ./pkg/migrate -run %s -update)", err, t.Name())
	}
	if bytes.Equal(got, want) {
		return
	}
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	i := 0
	for i < len(g) && i < len(w) && g[i] == w[i] {
		i++
	}
	line := func(ls []string, i int) string {
		if i < len(ls) {
			return ls[i]
		}
		return "<end of file>"
	}
	t.Fatalf("plan differs from %s at line %d (review, then go test ./pkg/migrate -run %s -update):\n got: %s\nwant: %s",
		path, i+1, t.Name(), line(g, i), line(w, i))
}

// TestAdoptAppSchema (issue 14, "Adopting an existing target"): the
// application's database with the audit's defects is planned (the plan
// pinned in testdata/adopt_plan.golden, nothing changed by planning),
// adopted, checked against the migrations' schema and the audit's catalog
// demands, and then replicated into through the sink's applier.
func TestAdoptAppSchema(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := appDB(t)
	conn := connect(t, url)
	set := builtinSet(t)
	opts := migrate.AdoptOptions{Mappings: set, Widen: true}
	constraints := rowCount(t, conn, `SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace`)

	pl, err := migrate.PlanUp(ctx, url, opts)
	if err != nil {
		t.Fatalf("PlanUp: %v", err)
	}
	untouched(t, conn, constraints)
	if !pl.Adopt || pl.Err() != nil {
		t.Fatalf("plan: adopt %v, refused %v; want an adoption", pl.Adopt, pl.Err())
	}
	var buf bytes.Buffer
	if err := pl.Write(&buf); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "adopt_plan.golden", laterMigrations.ReplaceAll(buf.Bytes(), []byte("$1 (...)")))
	var later []string
	for _, m := range pl.Migrations {
		switch {
		case m.Version <= pl.Through && m.Action == migrate.ActionApply && !strings.Contains(m.Why, "cdc"):
			t.Errorf("%s is applied during the adoption: %s", m.Name, m.Why)
		case m.Version > pl.Through && m.Action != migrate.ActionApply:
			t.Errorf("%s after the adopted ones is %s, want apply", m.Name, m.Action)
		case m.Version > pl.Through:
			later = append(later, m.Name)
		}
	}
	if !strings.Contains(buf.String(), strings.Join(later, ", ")) {
		t.Errorf("the plan does not list the later migrations %v", later)
	}

	_, res, err := migrate.UpAdopting(ctx, url, zaptest.NewLogger(t), opts)
	if err != nil {
		t.Fatalf("UpAdopting: %v", err)
	}
	if want := latest(t); int64(len(res)) != want {
		t.Fatalf("%d migrations applied or recorded, want %d: %+v", len(res), want, res)
	}
	for i, r := range res {
		record := r.Version <= pl.Through && pl.Migrations[i].Action == migrate.ActionRecord
		if r.Version != int64(i+1) || r.Adopted != record {
			t.Fatalf("result %d = %+v, want version %d adopted %v", i, r, i+1, record)
		}
	}
	if err := migrate.RequireCurrent(ctx, url); err != nil {
		t.Fatalf("RequireCurrent after adoption: %v", err)
	}
	// Nothing of the migrations' schema is missing or different.
	drift, err := migrate.Drift(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(drift) > 0 {
		t.Fatalf("after adoption the schema still differs from the migrations':\n  %s", strings.Join(drift, "\n  "))
	}
	checkAuditCatalog(t, conn)

	t.Run("constraints validated, indexes valid, triggers always", func(t *testing.T) {
		if n := rowCount(t, conn, `SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND NOT convalidated`); n != 0 {
			t.Fatalf("%d constraints left NOT VALID", n)
		}
		if n := rowCount(t, conn, `SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
			WHERE c.relnamespace = 'public'::regnamespace AND NOT x.indisvalid`); n != 0 {
			t.Fatalf("%d invalid indexes", n)
		}
		if n := rowCount(t, conn, `SELECT count(*) FROM pg_constraint WHERE conname LIKE 'cdc_adopt_%'`); n != 0 {
			t.Fatalf("%d temporary NOT NULL checks left behind", n)
		}
		rows, err := conn.Query(ctx, `SELECT tgname || '=' || tgenabled::text FROM pg_trigger
			WHERE tgrelid = 'funds_ledger_entries'::regclass AND NOT tgisinternal ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		trig, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(trig, ","); got != "funds_ledger_no_truncate=A,funds_ledger_no_update_delete=A" {
			t.Fatalf("ledger triggers %s, want both ENABLE ALWAYS (A)", got)
		}
		for _, q := range []string{"UPDATE funds_ledger_entries SET amount = 1", "DELETE FROM funds_ledger_entries", "TRUNCATE funds_ledger_entries"} {
			wantPgError(t, inTx(t, conn, q), "23001", "")
		}
	})

	t.Run("the application's rows and mappings are kept", func(t *testing.T) {
		var typ, price string
		if err := conn.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
			WHERE attrelid = 'seller_offers'::regclass AND attname = 'price_amount'`).Scan(&typ); err != nil || typ != "numeric(38,18)" {
			t.Fatalf("seller_offers.price_amount is %s (%v), want numeric(38,18)", typ, err)
		}
		if err := conn.QueryRow(ctx, `SELECT price_amount::text FROM seller_offers`).Scan(&price); err != nil || price != "290.123456780000000000" {
			t.Fatalf("the existing offer's price is %s (%v), want 290.12345678 unchanged", price, err)
		}
		if n := rowCount(t, conn, `SELECT count(*) FROM id_map WHERE legacy_object_id = '65f0000000000000000000a1'
			AND new_id = '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001' AND created_at IS NOT NULL`); n != 1 {
			t.Fatalf("the dual-write's id_map entry: %d rows, want 1", n)
		}
		if n := rowCount(t, conn, `SELECT count(*) FROM disputes`); n != 1 {
			t.Fatalf("the out-of-scope disputes table has %d rows, want its 1 untouched", n)
		}
		if n := rowCount(t, conn, `SELECT count(*) FROM pg_enum WHERE enumtypid = 'payment_status'::regtype AND enumlabel = 'expired'`); n != 1 {
			t.Fatal("payment_status lacks the migrations' value expired")
		}
	})

	// The adopted migrations' Down would drop the application's tables.
	if _, err := migrate.DownTo(ctx, url, 0, zap.NewNop()); !errors.Is(err, migrate.ErrAdoptedDown) {
		t.Fatalf("DownTo(0) after adoption = %v, want ErrAdoptedDown", err)
	}
	if err := migrate.RequireCurrent(ctx, url); err != nil {
		t.Fatalf("a refused DownTo changed the schema: %v", err)
	}

	// Adopted once: a second run has nothing to do.
	again, err := migrate.Up(ctx, url, zap.NewNop())
	if err != nil || len(again) != 0 {
		t.Fatalf("second Up = %v, %v; want nothing to do", again, err)
	}

	replicateInto(t, url, set)
}

// replicateInto applies documents through the sink's applier (the live
// sink's code path for a batch) and checks the rows: an update of a
// document the dual-write mapped lands on its existing row, and amounts
// with 18 decimal places are stored exactly in the widened column.
func replicateInto(t *testing.T, url string, set *transform.Set) {
	t.Helper()
	ctx := ctxT(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := transform.CheckCatalog(ctx, pool, set); err != nil {
		t.Fatalf("the sink's start-up catalog check refuses the adopted schema: %v", err)
	}
	a := sink.NewApplier(pool, set, "", "CDC")
	oid := func(s string) bson.ObjectID {
		id, err := bson.ObjectIDFromHex(s)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	dec := func(s string) bson.Decimal128 {
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	now := bson.NewDateTimeFromTime(time.Date(2026, 6, 5, 10, 0, 0, 0, time.UTC))
	buyer, seller := oid("65f0000000000000000000a1"), oid("65f0000000000000000000b2")
	pr, offer, payment, entry := oid("65f3000000000000000000c1"), oid("65f4000000000000000000c1"), oid("65f5000000000000000000c1"), oid("65f6000000000000000000c1")
	const amount = "1099.123456789012345678"
	ct := uint32(time.Now().Unix())
	var seq uint64
	apply := func(op event.Op, coll string, doc bson.D) {
		t.Helper()
		raw, err := bson.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		key, err := bson.Marshal(bson.D{{Key: "_id", Value: doc[0].Value}})
		if err != nil {
			t.Fatal(err)
		}
		seq++
		ev := &event.Event{V: event.Version, ID: fmt.Sprintf("%s:%d:%s", op, seq, coll), Op: op,
			Source: event.Source{DB: "escrow", Coll: coll, ClusterTime: event.ClusterTime{T: ct, I: uint32(seq)}}, Key: key, Doc: raw}
		data, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r, err := a.Apply(ctx, sink.NewBatch(set, []sink.Raw{{Seq: seq, Data: data}}))
		if err != nil {
			t.Fatalf("%s %s: %v", op, coll, err)
		}
		if r.Applied != 1 || r.DeadLettered != 0 {
			rows, _ := pool.Query(ctx, `SELECT error_class || ': ' || coalesce(field, '') || ': ' || reason FROM cdc.dead_letters`)
			dl, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			t.Fatalf("%s %s: %+v, want applied 1; dead letters: %v", op, coll, r, dl)
		}
	}
	points := bson.D{{Key: "available", Value: dec("120.5")}, {Key: "used", Value: dec("30")}, {Key: "total", Value: dec("150.5")}}
	apply(event.OpUpdate, "users", bson.D{{Key: "_id", Value: buyer}, {Key: "email", Value: "buyer@example.kz"}, {Key: "firstName", Value: "Aigerim N."},
		{Key: "points", Value: points}, {Key: "createdAt", Value: now}, {Key: "updatedAt", Value: now}})
	apply(event.OpInsert, "users", bson.D{{Key: "_id", Value: seller}, {Key: "firstName", Value: "Seller"},
		{Key: "points", Value: bson.D{{Key: "available", Value: int32(0)}, {Key: "used", Value: int32(0)}, {Key: "total", Value: int32(0)}}},
		{Key: "createdAt", Value: now}, {Key: "updatedAt", Value: now}})
	apply(event.OpInsert, "purchaseRequests", bson.D{{Key: "_id", Value: pr}, {Key: "buyerId", Value: buyer}, {Key: "title", Value: "A laptop"},
		{Key: "status", Value: "active"}, {Key: "createdAt", Value: now}, {Key: "updatedAt", Value: now}})
	apply(event.OpInsert, "sellerOffers", bson.D{{Key: "_id", Value: offer}, {Key: "purchaseRequestId", Value: pr}, {Key: "sellerId", Value: seller},
		{Key: "price", Value: bson.D{{Key: "amount", Value: dec(amount)}, {Key: "currency", Value: "USDT"}}},
		{Key: "status", Value: "pending"}, {Key: "createdAt", Value: now}, {Key: "updatedAt", Value: now}})
	apply(event.OpInsert, "payments", bson.D{{Key: "_id", Value: payment}, {Key: "purchaseRequestId", Value: pr}, {Key: "sellerOfferId", Value: offer},
		{Key: "buyerId", Value: buyer}, {Key: "provider", Value: "request.network"}, {Key: "direction", Value: "in"}, {Key: "status", Value: "pending"},
		{Key: "amount", Value: dec(amount)}, {Key: "currency", Value: "USDT"},
		{Key: "metadata", Value: bson.D{{Key: "rnRequestId", Value: "rn-2"}}}, {Key: "createdAt", Value: now}, {Key: "updatedAt", Value: now}})
	apply(event.OpInsert, "fundsLedger", bson.D{{Key: "_id", Value: entry}, {Key: "entryType", Value: "hold"}, {Key: "amount", Value: dec(amount)},
		{Key: "currency", Value: "USDT"}, {Key: "purchaseRequestId", Value: pr}, {Key: "paymentId", Value: payment}, {Key: "userId", Value: buyer},
		{Key: "idempotencyKey", Value: "pay-2:hold"}, {Key: "createdAt", Value: now}})

	conn := connect(t, url)
	var first, total string
	if err := conn.QueryRow(ctx, `SELECT first_name, points_total::text FROM users WHERE id = '0b7f9a1e-58a4-4c51-9d3b-5d1a6d1c0001'`).Scan(&first, &total); err != nil {
		t.Fatalf("the dual-write's user row: %v", err)
	}
	if first != "Aigerim N." || total != "150.500000000000000000" {
		t.Fatalf("the dual-write's user row holds %q, %s; want the replicated update", first, total)
	}
	if n := rowCount(t, conn, `SELECT count(*) FROM users`); n != 2 {
		t.Fatalf("%d users, want 2: the update of a mapped document must not mint a second row", n)
	}
	for _, q := range []string{
		`SELECT count(*) FROM seller_offers o JOIN purchase_requests p ON p.id = o.purchase_request_id WHERE o.price_amount::text = $1 AND p.title = 'A laptop'`,
		`SELECT count(*) FROM payments WHERE amount::text = $1 AND provider = 'request_network' AND rn_request_id = 'rn-2'`,
		`SELECT count(*) FROM funds_ledger_entries WHERE amount::text = $1 AND entry_type = 'hold'`,
	} {
		if n := rowCount(t, conn, q, amount); n != 1 {
			t.Fatalf("%s: %d rows with %s exactly, want 1", q, n, amount)
		}
	}
}

// TestAdoptRefusesWhatWouldLoseMoney: a table that cannot be adopted
// safely refuses the whole adoption with every difference named, and
// changes nothing; --widen converts the narrower numerics, not the rest.
func TestAdoptRefusesWhatWouldLoseMoney(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := appDB(t,
		// wei stored with 18 decimals: converting to numeric(78,0) rounds.
		`ALTER TABLE derived_destinations ALTER COLUMN last_known_balance TYPE numeric(38,18)`,
		// a payment amount as a double.
		`ALTER TABLE payments ALTER COLUMN amount TYPE double precision`,
		// a quote's rate with 10 decimals: narrower, convertible.
		`ALTER TABLE payment_quotes ALTER COLUMN fx_rate TYPE numeric(20,10)`,
		// a time without its zone.
		`ALTER TABLE users ALTER COLUMN last_login_at TYPE timestamp without time zone`,
		// a column the payments mapping writes.
		`ALTER TABLE payments DROP COLUMN rn_request_id`,
		// an index of the migrations' name with another definition.
		`CREATE INDEX purchase_requests_buyer_idx ON purchase_requests (buyer_id)`,
	)
	conn := connect(t, url)
	constraints := rowCount(t, conn, `SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace`)
	set := builtinSet(t)
	want := map[string]migrate.DifferenceKind{
		"derived_destinations.last_known_balance": migrate.DiffLossy,
		"index purchase_requests_buyer_idx":       migrate.DiffConflict,
		"payment_quotes.fx_rate":                  migrate.DiffMoney,
		"payments.amount":                         migrate.DiffLossy,
		"payments.rn_request_id":                  migrate.DiffMissingColumn,
		"seller_offers.price_amount":              migrate.DiffMoney,
		"users.last_login_at":                     migrate.DiffType,
	}
	for _, widen := range []bool{false, true} {
		t.Run(fmt.Sprintf("widen=%v", widen), func(t *testing.T) {
			pl, res, err := migrate.UpAdopting(ctx, url, zap.NewNop(), migrate.AdoptOptions{Mappings: set, Widen: widen})
			var refused *migrate.AdoptRefusedError
			if !errors.As(err, &refused) || !errors.Is(err, migrate.ErrAdoptRefused) {
				t.Fatalf("UpAdopting = %v, want an *AdoptRefusedError", err)
			}
			if len(res) != 0 || pl == nil || !pl.Adopt {
				t.Fatalf("refused, yet results %v, plan %+v", res, pl)
			}
			got := map[string]migrate.DifferenceKind{}
			for _, d := range refused.Differences {
				got[d.Object] = d.Kind
				if !strings.Contains(err.Error(), d.Object) {
					t.Errorf("the error does not name %s: %v", d.Object, err)
				}
			}
			for obj, kind := range want {
				if widen && kind == migrate.DiffMoney {
					if _, ok := got[obj]; ok {
						t.Errorf("with --widen, %s is still refused: %s", obj, got[obj])
					}
					continue
				}
				if got[obj] != kind {
					t.Errorf("difference %s: kind %q, want %q", obj, got[obj], kind)
				}
			}
			for obj, kind := range got {
				if _, ok := want[obj]; !ok {
					t.Errorf("unexpected difference %s [%s]", obj, kind)
				}
			}
			t.Logf("refused as expected:\n%v", err)
			untouched(t, conn, constraints)
		})
	}
	// The plan says the same, without changing anything either.
	pl, err := migrate.PlanUp(ctx, url, migrate.AdoptOptions{Mappings: set})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := pl.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "REFUSED: 7 difference(s)") || !strings.Contains(buf.String(), "payments.amount [lossy]: double precision") {
		t.Fatalf("the plan does not show the refusal:\n%s", buf.String())
	}
	untouched(t, conn, constraints)
}

// TestAdoptTakesOverAnEquivalentForeignKey: the application's own
// foreign key (Drizzle's name, NOT DEFERRABLE) is the migrations'
// pr_buyer_fk. The adoption then covers 00011_foreign_keys.sql too, keeps
// that key rather than adding a second one, makes it DEFERRABLE (the sink
// defers foreign keys to commit) and renames it, because
// 00012_validate_foreign_keys.sql validates it by name.
func TestAdoptTakesOverAnEquivalentForeignKey(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := appDB(t, `ALTER TABLE purchase_requests ADD CONSTRAINT purchase_requests_buyer_id_users_id_fk
		FOREIGN KEY (buyer_id) REFERENCES users (id)`)
	opts := migrate.AdoptOptions{Mappings: builtinSet(t), Widen: true}
	pl, err := migrate.PlanUp(ctx, url, opts)
	if err != nil || pl.Err() != nil {
		t.Fatalf("PlanUp = %v, refused %v", err, pl.Err())
	}
	var through string
	for _, m := range pl.Migrations {
		if m.Version == pl.Through {
			through = m.Name
		}
	}
	if through != "00011_foreign_keys.sql" {
		t.Fatalf("the adoption covers the migrations through %s, want 00011_foreign_keys.sql (the database has one of its keys)", through)
	}
	var text bytes.Buffer
	if err := pl.Write(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ALTER TABLE purchase_requests RENAME CONSTRAINT purchase_requests_buyer_id_users_id_fk TO pr_buyer_fk;",
		"ALTER TABLE purchase_requests ALTER CONSTRAINT pr_buyer_fk DEFERRABLE INITIALLY IMMEDIATE;",
		"ALTER TABLE payments ADD CONSTRAINT payments_pr_fk FOREIGN KEY (purchase_request_id) REFERENCES purchase_requests(id) DEFERRABLE NOT VALID;",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the plan lacks %s", want)
		}
	}
	if _, _, err := migrate.UpAdopting(ctx, url, zap.NewNop(), opts); err != nil {
		t.Fatalf("UpAdopting: %v", err)
	}
	conn := connect(t, url)
	if n := rowCount(t, conn, `SELECT count(*) FROM pg_constraint WHERE conrelid = 'purchase_requests'::regclass AND contype = 'f'
		AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = 'purchase_requests'::regclass AND attname = 'buyer_id')]
		AND conname = 'pr_buyer_fk' AND condeferrable AND convalidated`); n != 1 {
		t.Fatalf("purchase_requests.buyer_id has %d deferrable validated pr_buyer_fk, want its one key", n)
	}
	if drift, err := migrate.Drift(ctx, url, opts); err != nil || len(drift) > 0 {
		t.Fatalf("drift: %v, %v", drift, err)
	}
}

// TestAdoptNotNeeded: a database without the application's tables
// migrates as before, and one the migrations manage has nothing to adopt.
func TestAdoptNotNeeded(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	pl, err := migrate.PlanUp(ctx, url, migrate.AdoptOptions{Mappings: builtinSet(t)})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Adopt || len(pl.Steps) != 0 || int64(len(pl.Migrations)) != latest(t) {
		t.Fatalf("plan for an empty database: adopt %v, %d steps, %d migrations; want every migration applied as usual", pl.Adopt, len(pl.Steps), len(pl.Migrations))
	}
	var buf bytes.Buffer
	if err := pl.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "No adoption: the application's schema has no tables.") {
		t.Fatalf("plan text:\n%s", buf.String())
	}
	_, res, err := migrate.UpAdopting(ctx, url, zap.NewNop(), migrate.AdoptOptions{Mappings: builtinSet(t)})
	if err != nil || int64(len(res)) != latest(t) {
		t.Fatalf("UpAdopting on an empty database = %d results, %v", len(res), err)
	}
	for _, r := range res {
		if r.Adopted {
			t.Fatalf("%+v recorded without running on an empty database", r)
		}
	}
	if pl, err = migrate.PlanUp(ctx, url, migrate.AdoptOptions{}); err != nil || len(pl.Migrations) != 0 || pl.Adopt {
		t.Fatalf("plan for a current database: %+v, %v", pl, err)
	}

	// An id_map the dual-write created alone is upgraded by 00002 in place
	// (TestIDMapUpgradedInPlace), not adopted.
	url = pgtest.NewDatabase(t)
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `CREATE TABLE id_map (collection text, legacy_object_id text, new_id uuid)`); err != nil {
		t.Fatal(err)
	}
	if pl, err = migrate.PlanUp(ctx, url, migrate.AdoptOptions{}); err != nil || pl.Adopt {
		t.Fatalf("plan with only id_map: adopt %v (%v), want the migrations' in-place upgrade", pl.Adopt, err)
	}
}

// TestAdoptResumesAfterAFailedStep: a row that breaks a new constraint
// stops the adoption at that step, naming it, with PostgreSQL's error;
// once the row is repaired, cdc migrate again finishes the adoption from
// where it stopped.
func TestAdoptResumesAfterAFailedStep(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	// CR-7: a zero FX rate.
	url := appDB(t, `INSERT INTO payment_quotes (offer_amount, offer_currency, settle_currency, fx_rate, token_price_usd, raw_settle_amount, settle_amount)
		VALUES (100, 'USD', 'USDT', 0, 1, 100, 100)`)
	opts := migrate.AdoptOptions{Mappings: builtinSet(t), Widen: true}
	_, res, err := migrate.UpAdopting(ctx, url, zap.NewNop(), opts)
	var se *migrate.StepError
	if !errors.As(err, &se) || !strings.Contains(se.Step.Summary, "validate ck_pq_pos") {
		t.Fatalf("UpAdopting = %v, want a *StepError at the validation of ck_pq_pos", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != "ck_pq_pos" {
		t.Fatalf("no check_violation on ck_pq_pos in %v", err)
	}
	if len(res) != 0 {
		t.Fatalf("migrations recorded before the steps finished: %v", res)
	}
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `UPDATE payment_quotes SET fx_rate = 1.0002 WHERE fx_rate = 0`); err != nil {
		t.Fatal(err)
	}
	pl, res, err := migrate.UpAdopting(ctx, url, zap.NewNop(), opts)
	if err != nil {
		t.Fatalf("UpAdopting after the repair: %v", err)
	}
	if pl.Steps[0].Summary != "validate ck_pq_pos on payment_quotes (scans the rows; reads and writes continue; fails, naming the constraint, on a row that breaks it)" {
		t.Fatalf("the resumed plan starts with %q, want the failed validation (everything before it is done)", pl.Steps[0].Summary)
	}
	if int64(len(res)) != latest(t) {
		t.Fatalf("%d migrations after the resumed adoption, want %d", len(res), latest(t))
	}
	if drift, err := migrate.Drift(ctx, url, opts); err != nil || len(drift) > 0 {
		t.Fatalf("drift after the resumed adoption: %v, %v", drift, err)
	}
}

// TestConcurrentAdoption: replicas that run cdc migrate together adopt
// once; the others wait for the lock and find nothing to do.
func TestConcurrentAdoption(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := appDB(t)
	opts := migrate.AdoptOptions{Mappings: builtinSet(t), Widen: true}
	const replicas = 3
	var wg sync.WaitGroup
	results := make([][]migrate.Result, replicas)
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i], errs[i] = migrate.UpAdopting(ctx, url, zap.NewNop(), opts)
		}()
	}
	wg.Wait()
	total := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		total += len(results[i])
	}
	if int64(total) != latest(t) {
		t.Fatalf("replicas applied or recorded %d migrations in total, want each of the %d once", total, latest(t))
	}
	if err := migrate.RequireCurrent(ctx, url); err != nil {
		t.Fatal(err)
	}
}
