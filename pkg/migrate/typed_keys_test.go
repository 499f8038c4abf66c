package migrate_test

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
)

// oldKeyString is event.KeyString before typed keys (the form 00018
// moves): an ObjectId's hex, a string itself, canonical Extended JSON of
// anything else.
func oldKeyString(v bson.RawValue) string {
	switch v.Type {
	case bson.TypeObjectID:
		return v.ObjectID().Hex()
	case bson.TypeString:
		return v.StringValue()
	}
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, true, false)
	if err != nil {
		panic(err)
	}
	return string(b[5 : len(b)-1])
}

func idValue(t *testing.T, v any) bson.RawValue {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "_id", Value: v}})
	if err != nil {
		t.Fatalf("marshal %T %v: %v", v, v, err)
	}
	return bson.Raw(b).Lookup("_id")
}

const typedVersion = 18

// TestTypedDocKeyAgreesWithKeyString: cdc.typed_doc_key of every old key
// the previous binary could write is the key this binary writes for that
// _id, byte for byte (the migration and the sink must agree), over a
// corpus of random doubles and decimals and every other _id type; the
// old keys that cannot be told apart without MongoDB are read as the
// documented type.
func TestTypedDocKeyAgreesWithKeyString(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	if _, err := migrate.UpTo(ctx, url, typedVersion, zap.NewNop()); err != nil {
		t.Fatalf("UpTo(%d): %v", typedVersion, err)
	}
	conn := connect(t, url)

	rng := rand.New(rand.NewPCG(14, 18))
	dec := func(s string) bson.Decimal128 {
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			t.Fatalf("ParseDecimal128(%q): %v", s, err)
		}
		return d
	}
	oid := bson.NewObjectID()
	vals := []any{
		oid, "user-42", "", "7", "a b", "é", strings.ToUpper(oid.Hex()), oid.Hex()[:23] + "G",
		`"quoted`, "\"a\nb\x01\x1f\t\\\"", "\"é\u2028", "{oops", `{"a": 1}`, `{"$numberInt":"x"}`, `{"$numberInt":"007"}`,
		`{"$numberDecimal":"1.5.5"}`, `{}x`, "{\n}", `{"a":1}`, `{"$minKey":1}x`, `{"$timestamp":{"t":1,"i":2}} `,
		int32(7), int32(-7), int32(0), int32(math.MinInt32), int64(7), int64(math.MaxInt64), int64(math.MinInt64), int64(1<<53 + 1),
		7.0, 7.5, -0.125, 0.1, math.Copysign(0, -1), 1e20, float64(1 << 63), -float64(1 << 63), 1e-7, 5e-324, math.MaxFloat64, 2.2250738585072014e-308,
		math.Inf(1), math.Inf(-1), math.NaN(),
		dec("7"), dec("7.50"), dec("-0"), dec("0E-20"), dec("1E+20"), dec("0.1"), dec("1234.500000000000000001"),
		dec("1.234567890123456789012345678901234E+6144"), dec("1E-6176"), dec("-9.999999999999999999999999999999999E-6143"),
		dec("9223372036854775807"), dec("9223372036854775808"), dec("NaN"), dec("Infinity"), dec("-Infinity"),
		bson.NewDecimal128(0x3040000000000000|0x0001ed09bead87c0, 0x378d8e6400000000), // coefficient 10^34: non-canonical
		true, false, nil, bson.MinKey{}, bson.MaxKey{},
		bson.NewDateTimeFromTime(time.UnixMilli(1700000000123)), bson.Binary{Subtype: 4, Data: make([]byte, 16)},
		bson.Timestamp{T: 1, I: 2}, bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: "x y"}}, bson.D{},
	}
	for range 1500 {
		vals = append(vals, math.Float64frombits(rng.Uint64()),
			float64(rng.Int64N(2_000_001)-1_000_000)/math.Pow(10, float64(rng.IntN(10))),
			float64(rng.Int64N(1<<40))/float64(int64(1)<<rng.IntN(50)),
			math.Ldexp(1, 50+rng.IntN(16))+float64(rng.IntN(5)))
		digits := strconv.FormatUint(rng.Uint64(), 10) + strconv.FormatUint(rng.Uint64(), 10)
		digits = strings.TrimLeft(digits[:1+rng.IntN(34)], "0")
		if digits == "" {
			digits = "0"
		}
		sign := ""
		if rng.IntN(2) == 0 {
			sign = "-"
		}
		vals = append(vals, dec(sign+digits+"E"+strconv.Itoa(rng.IntN(200)-100)), int64(rng.Uint64()>>rng.IntN(64)), rng.Int32())
	}
	// The old keys that cannot be told apart without MongoDB: read as
	// the type whose key they spell.
	undecidable := map[string]string{
		oid.Hex():                  oid.Hex(),
		`{"$numberInt":"7"}`:       `{"$numberLong":"7"}`,
		`{"$numberDouble":"7.5"}`:  `{"$numberDecimal":"7.5"}`,
		"true":                     "true",
		"null":                     "null",
		`{"a":{"$numberInt":"1"}}`: `{"a":{"$numberInt":"1"}}`,
	}
	want := map[string]string{}
	for _, v := range vals {
		id := idValue(t, v)
		old, typed := oldKeyString(id), event.KeyString(id)
		if w, ok := want[old]; ok && w != typed {
			t.Fatalf("corpus: the old key %s stands for two _ids (%s and %s): pick decidable values", old, w, typed)
		}
		want[old] = typed
	}
	for old, typed := range undecidable {
		want[old] = typed
	}
	olds := make([]string, 0, len(want))
	for k := range want {
		olds = append(olds, k)
	}
	rows, err := conn.Query(ctx, `SELECT k, cdc.typed_doc_key(k) FROM unnest($1::text[]) AS k`, olds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var p [2]string
		return p, r.Scan(&p[0], &p[1])
	})
	if err != nil {
		t.Fatalf("cdc.typed_doc_key: %v", err)
	}
	if len(got) != len(olds) {
		t.Fatalf("%d keys converted, want %d", len(got), len(olds))
	}
	bad := 0
	for _, p := range got {
		if p[1] != want[p[0]] {
			bad++
			if bad <= 10 {
				t.Errorf("cdc.typed_doc_key(%s) = %s, want %s", p[0], p[1], want[p[0]])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d keys differ between the migration and event.KeyString", bad, len(got))
	}
	t.Logf("%d old keys agree", len(got))
}

// TestTypedDocumentKeysMigration (00018): the rows of every table keyed
// by document key, before and after.
func TestTypedDocumentKeysMigration(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	if _, err := migrate.UpTo(ctx, url, typedVersion-1, zap.NewNop()); err != nil {
		t.Fatalf("UpTo(%d): %v", typedVersion-1, err)
	}
	conn := connect(t, url)
	oid := bson.NewObjectID().Hex()
	upper := strings.ToUpper(bson.NewObjectID().Hex())
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// id_map: an ObjectId and a plain string keep their keys (and
	// uuids); the rest move. upper and `"upper"` (a string holding
	// quotes) are two strings whose new keys chain: "upper" is the old
	// key of the second.
	idMap := []struct{ old, new string }{
		{oid, oid},
		{"user-42", "user-42"},
		{upper, `"` + upper + `"`},
		{`"` + upper + `"`, `"\"` + upper + `\""`},
		{`{"$numberInt":"7"}`, `{"$numberLong":"7"}`},
		{`{"$numberDouble":"7.5"}`, `{"$numberDecimal":"7.5"}`},
		{`{"$numberDecimal":"1.000"}`, `{"$numberLong":"1"}`},
		{"{oops", `"{oops"`},
		{`{"$date":{"$numberLong":"1700000000000"}}`, `{"$date":{"$numberLong":"1700000000000"}}`},
	}
	uuids := map[string]string{}
	for _, r := range idMap {
		var u string
		if err := conn.QueryRow(ctx, `INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES ('users', $1, gen_random_uuid()) RETURNING new_id::text`, r.old).Scan(&u); err != nil {
			t.Fatal(err)
		}
		uuids[r.new] = u
	}
	exec(`INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES ('payments', '{"$numberInt":"7"}', gen_random_uuid())`)
	// doc_versions: int32 7 (deleted), 7.0 and NumberLong(7) were three
	// documents; MongoDB holds one: the newest version stays.
	exec(`INSERT INTO cdc.doc_versions (collection, doc_key, cluster_time, txn_index, deleted) VALUES
		('users', '{"$numberInt":"7"}', 100, 0, true),
		('users', '{"$numberDouble":"7.0"}', 200, 1, false),
		('users', '{"$numberLong":"7"}', 200, 0, true),
		('users', $1, 50, 0, false),
		('users', $2, 60, 0, false),
		('users', $3, 70, 0, true)`, oid, upper, `"`+upper+`"`)
	exec(`INSERT INTO cdc.dead_letters (event_id, collection, doc_key, error_class, reason, event) VALUES
		('e1', 'users', '{"$numberInt":"7"}', 'rejected', 'r', '{}'),
		('e2', 'users', $1, 'rejected', 'r', '{}'),
		('e3', 'users', '"q', 'rejected', 'r', '{}')`, oid)
	exec(`INSERT INTO cdc.dangling_refs (collection, doc_key, column_name, ref_collection, ref_legacy_id, first_seen) VALUES
		('users', '{"$numberInt":"7"}', 'referred_by_id', 'users', $1, now() - interval '1 hour'),
		('users', '{"$numberLong":"7"}', 'referred_by_id', 'users', $2, now()),
		('users', '{"$numberInt":"8"}', 'referred_by_id', 'users', $1, now())`, oid, strings.ToLower(upper))
	exec(`INSERT INTO cdc.deferred_events (consumer, stream_seq, kind, event_id, collection, doc_key, reason, event) VALUES
		('cdc-sink', 1, 'wait', 'e4', 'users', '{"$numberDecimal":"7.50"}', 'r', '\x00'),
		('cdc-sink', 2, 'wait', 'e5', 'users', $1, 'r', '\x00')`, oid)

	if _, err := migrate.Up(ctx, url, zap.NewNop()); err != nil {
		t.Fatalf("Up: %v", err)
	}

	rows, err := conn.Query(ctx, `SELECT legacy_object_id, new_id::text FROM id_map WHERE collection = 'users'`)
	if err != nil {
		t.Fatal(err)
	}
	after, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var p [2]string
		return p, r.Scan(&p[0], &p[1])
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(idMap) {
		t.Fatalf("id_map has %d users rows after, want %d: %v", len(after), len(idMap), after)
	}
	for _, p := range after {
		u, ok := uuids[p[0]]
		if !ok {
			t.Fatalf("id_map: unexpected key %s after the migration (want %v)", p[0], idMap)
		}
		if u != p[1] {
			t.Fatalf("id_map %s: new_id %s, want %s (the mapping moves, its uuid stays)", p[0], p[1], u)
		}
	}
	var payments string
	if err := conn.QueryRow(ctx, `SELECT legacy_object_id FROM id_map WHERE collection = 'payments'`).Scan(&payments); err != nil || payments != `{"$numberLong":"7"}` {
		t.Fatalf("id_map payments: %q (%v), want {\"$numberLong\":\"7\"} (keys are per collection)", payments, err)
	}

	type version struct {
		key     string
		ct      int64
		idx     int
		deleted bool
	}
	rows, err = conn.Query(ctx, `SELECT doc_key, cluster_time, txn_index, deleted FROM cdc.doc_versions ORDER BY doc_key`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (version, error) {
		var v version
		return v, r.Scan(&v.key, &v.ct, &v.idx, &v.deleted)
	})
	if err != nil {
		t.Fatal(err)
	}
	wantVersions := []version{
		{`"` + upper + `"`, 60, 0, false},
		{`"\"` + upper + `\""`, 70, 0, true},
		{oid, 50, 0, false},
		{`{"$numberLong":"7"}`, 200, 1, false},
	}
	if len(versions) != len(wantVersions) {
		t.Fatalf("doc_versions after: %v, want %v", versions, wantVersions)
	}
	for i := range versions {
		if versions[i] != wantVersions[i] {
			t.Fatalf("doc_versions row %d: %+v, want %+v", i, versions[i], wantVersions[i])
		}
	}

	for id, want := range map[string]string{"e1": `{"$numberLong":"7"}`, "e2": oid, "e3": `"\"q"`} {
		var k string
		if err := conn.QueryRow(ctx, `SELECT doc_key FROM cdc.dead_letters WHERE event_id = $1`, id).Scan(&k); err != nil || k != want {
			t.Fatalf("dead letter %s: doc_key %s (%v), want %s", id, k, err, want)
		}
	}
	rows, err = conn.Query(ctx, `SELECT doc_key || ' -> ' || ref_legacy_id FROM cdc.dangling_refs ORDER BY doc_key`)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(refs, "; "), `{"$numberLong":"7"} -> `+strings.ToLower(upper)+`; {"$numberLong":"8"} -> `+oid; got != want {
		t.Fatalf("dangling_refs after: %s, want %s (the newer record of document 7 stays)", got, want)
	}
	for seq, want := range map[int]string{1: `{"$numberDecimal":"7.5"}`, 2: oid} {
		var k string
		if err := conn.QueryRow(ctx, `SELECT doc_key FROM cdc.deferred_events WHERE stream_seq = $1`, seq).Scan(&k); err != nil || k != want {
			t.Fatalf("deferred event %d: doc_key %s (%v), want %s", seq, k, err, want)
		}
	}

	// Down refuses while numeric or quoted keys exist.
	if _, err := migrate.DownTo(ctx, url, typedVersion-1, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "Down refused") {
		t.Fatalf("DownTo(%d) with typed keys: %v, want a refusal", typedVersion-1, err)
	}
}

// TestTypedDocumentKeysRefuseTwoMappingsOfOneDocument: id_map entries of
// int32 7 and NumberLong(7) (two uuids for what MongoDB holds one
// document) stop the migration, naming them; nothing changes.
func TestTypedDocumentKeysRefuseTwoMappingsOfOneDocument(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	if _, err := migrate.UpTo(ctx, url, typedVersion-1, zap.NewNop()); err != nil {
		t.Fatalf("UpTo(%d): %v", typedVersion-1, err)
	}
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES
		('users', '{"$numberInt":"7"}', gen_random_uuid()), ('users', '{"$numberLong":"7"}', gen_random_uuid()),
		('users', '{"$numberInt":"8"}', gen_random_uuid())`); err != nil {
		t.Fatal(err)
	}
	_, err := migrate.Up(ctx, url, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "typed document keys refused") || !strings.Contains(err.Error(), `{"$numberInt":"7"}, {"$numberLong":"7"}`) {
		t.Fatalf("Up with two mappings of one document: %v, want a refusal naming both keys", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM id_map WHERE legacy_object_id LIKE '{"$numberInt":%'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the refusal: %d int32 keys (%v), want both still there", n, err)
	}
	st, err := migrate.Status(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Version == typedVersion && !s.Pending {
			t.Fatalf("00018 recorded as applied after its refusal")
		}
	}
}

// TestTypedDocumentKeysDown: with only ObjectId and plain string keys,
// Down drops the function and Up applies again.
func TestTypedDocumentKeysDown(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := pgtest.NewDatabase(t)
	if _, err := migrate.UpTo(ctx, url, typedVersion, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES
		('users', '65f000000000000000000001', gen_random_uuid()), ('users', 'user-42', gen_random_uuid())`); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.DownTo(ctx, url, typedVersion-1, zap.NewNop()); err != nil {
		t.Fatalf("DownTo(%d): %v", typedVersion-1, err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regprocedure('cdc.typed_doc_key(text)') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("cdc.typed_doc_key after Down: exists %v (%v)", exists, err)
	}
	if _, err := migrate.UpTo(ctx, url, typedVersion, zap.NewNop()); err != nil {
		t.Fatalf("UpTo(%d) again: %v", typedVersion, err)
	}
}
