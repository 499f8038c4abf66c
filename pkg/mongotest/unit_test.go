package mongotest

import (
	"bytes"
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

func val(t testing.TB, x any) bsoncore.Value {
	t.Helper()
	typ, b, err := bson.MarshalValue(x)
	if err != nil {
		t.Fatal(err)
	}
	return bsoncore.Value{Type: bsoncore.Type(typ), Data: b}
}

func doc(t testing.TB, d bson.D) bsoncore.Document {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCompareOrder(t *testing.T) {
	oid := bson.NewObjectID()
	dec, _ := bson.ParseDecimal128("2.5")
	ordered := []any{
		bson.MinKey{},
		bson.Null{},
		math.NaN(),
		math.Inf(-1),
		int64(math.MinInt64),
		int32(-1),
		0.5,
		int32(1),
		dec,
		int64(3),
		3.5,
		int64(math.MaxInt64),
		"",
		"a",
		"b",
		bson.D{},
		bson.D{{Key: "a", Value: 1}},
		bson.D{{Key: "a", Value: "x"}},
		bson.A{},
		bson.A{1},
		bson.Binary{Data: []byte{9}},
		bson.Binary{Data: []byte{1, 2}},
		oid,
		false,
		true,
		bson.DateTime(-5),
		bson.DateTime(5),
		bson.Timestamp{T: 1, I: 2},
		bson.Timestamp{T: 2, I: 1},
		bson.Regex{Pattern: "a"},
		bson.MaxKey{},
	}
	for i := range ordered {
		for j := range ordered {
			a, b := val(t, ordered[i]), val(t, ordered[j])
			got := compareValues(a, b)
			want := cmpInt(int64(i), int64(j))
			if got != want {
				t.Fatalf("compare(%v, %v) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	// Numbers compare by value across types.
	if compareValues(val(t, int32(1)), val(t, 1.0)) != 0 || compareValues(val(t, int64(2)), val(t, int32(2))) != 0 {
		t.Fatal("numeric equality across types")
	}
	d1, _ := bson.ParseDecimal128("1.0")
	if compareValues(val(t, d1), val(t, int64(1))) != 0 {
		t.Fatal("decimal 1.0 == 1")
	}
	if compareValues(val(t, int64(1<<53+1)), val(t, float64(1<<53))) != 1 {
		t.Fatal("large int64 vs double must compare exactly")
	}
}

func TestIDKeyEquivalence(t *testing.T) {
	d1, _ := bson.ParseDecimal128("1.00")
	same := []any{int32(1), int64(1), 1.0, d1}
	for _, x := range same {
		if idKey(val(t, x)) != idKey(val(t, int32(1))) {
			t.Fatalf("idKey(%v) differs from idKey(1)", x)
		}
	}
	diff := []any{"1", 1.5, true, bson.D{{Key: "a", Value: 1}}, bson.NewObjectID()}
	seen := map[string]bool{idKey(val(t, 1)): true}
	for _, x := range diff {
		k := idKey(val(t, x))
		if seen[k] {
			t.Fatalf("idKey collision for %v", x)
		}
		seen[k] = true
	}
	if idKey(val(t, bson.D{{Key: "a", Value: int32(1)}})) != idKey(val(t, bson.D{{Key: "a", Value: 1.0}})) {
		t.Fatal("nested numbers must normalise")
	}
}

func TestMatcher(t *testing.T) {
	d := doc(t, bson.D{
		{Key: "_id", Value: 1},
		{Key: "a", Value: bson.D{{Key: "b", Value: int32(5)}, {Key: "s", Value: "hello"}}},
		{Key: "arr", Value: bson.A{1, 2, bson.D{{Key: "x", Value: "y"}}}},
		{Key: "n", Value: nil},
		{Key: "opType", Value: "update"},
	})
	cases := []struct {
		filter bson.D
		want   bool
	}{
		{bson.D{}, true},
		{bson.D{{Key: "a.b", Value: 5.0}}, true},
		{bson.D{{Key: "a.b", Value: bson.D{{Key: "$gt", Value: 4}, {Key: "$lte", Value: 5}}}}, true},
		{bson.D{{Key: "a.b", Value: bson.D{{Key: "$gt", Value: "4"}}}}, false},
		{bson.D{{Key: "a.b", Value: bson.D{{Key: "$ne", Value: 5}}}}, false},
		{bson.D{{Key: "arr", Value: 2}}, true},
		{bson.D{{Key: "arr.x", Value: "y"}}, true},
		{bson.D{{Key: "arr.1", Value: 2}}, true},
		{bson.D{{Key: "arr", Value: bson.D{{Key: "$size", Value: 3}}}}, true},
		{bson.D{{Key: "missing", Value: nil}}, true},
		{bson.D{{Key: "n", Value: nil}}, true},
		{bson.D{{Key: "n", Value: bson.D{{Key: "$exists", Value: true}}}}, true},
		{bson.D{{Key: "missing", Value: bson.D{{Key: "$exists", Value: false}}}}, true},
		{bson.D{{Key: "missing", Value: bson.D{{Key: "$exists", Value: true}}}}, false},
		{bson.D{{Key: "opType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update"}}}}}, true},
		{bson.D{{Key: "opType", Value: bson.D{{Key: "$nin", Value: bson.A{"insert", "update"}}}}}, false},
		{bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "a.s", Value: bson.Regex{Pattern: "^he"}}}}}}, true},
		{bson.D{{Key: "$and", Value: bson.A{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "a.s", Value: "nope"}}}}}, false},
		{bson.D{{Key: "$nor", Value: bson.A{bson.D{{Key: "_id", Value: 2}}}}}, true},
		{bson.D{{Key: "a.b", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$lt", Value: 3}}}}}}, true},
		{bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 5}, {Key: "s", Value: "hello"}}}}, true},
		{bson.D{{Key: "a", Value: bson.D{{Key: "s", Value: "hello"}, {Key: "b", Value: 5}}}}, false},
		{bson.D{{Key: "arr", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "x", Value: "y"}}}}}}, true},
	}
	for _, c := range cases {
		m, err := compileFilter(doc(t, c.filter))
		if err != nil {
			t.Fatalf("%v: %v", c.filter, err)
		}
		if got := m.match(d); got != c.want {
			t.Errorf("%v: got %v want %v", c.filter, got, c.want)
		}
	}
	if _, err := compileFilter(doc(t, bson.D{{Key: "a", Value: bson.D{{Key: "$bogus", Value: 1}}}})); err == nil {
		t.Fatal("unknown operator accepted")
	}
}

func TestUpdateDescription(t *testing.T) {
	old := doc(t, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "sub", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "arr", Value: bson.A{1}}, {Key: "gone", Value: true}})
	upd := bson.D{
		{Key: "$set", Value: bson.D{{Key: "a", Value: 1}, {Key: "sub.x", Value: 2}, {Key: "new.deep", Value: "v"}}},
		{Key: "$push", Value: bson.D{{Key: "arr", Value: 2}}},
		{Key: "$unset", Value: bson.D{{Key: "gone", Value: ""}, {Key: "never", Value: ""}}},
	}
	spec, err := parseUpdate(val(t, upd))
	if err != nil {
		t.Fatal(err)
	}
	res, err := applyUpdate(spec, old, false)
	if err != nil {
		t.Fatal(err)
	}
	// Decoded with nested documents as bson.M (driver v2 decodes them as
	// bson.D unless told).
	var got bson.M
	dec := bson.NewDecoder(bson.NewDocumentReader(bytes.NewReader(res.desc)))
	dec.DefaultDocumentM()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	uf := got["updatedFields"].(bson.M)
	if len(uf) != 3 || uf["sub.x"] != int32(2) || uf["arr.1"] != int32(2) {
		t.Fatalf("updatedFields %v", uf)
	}
	if nd, ok := uf["new"].(bson.M); !ok || nd["deep"] != "v" {
		t.Fatalf("new subdocument must be reported whole: %v", uf)
	}
	if rf := got["removedFields"].(bson.A); len(rf) != 1 || rf[0] != "gone" {
		t.Fatalf("removedFields %v", rf)
	}
	// Conflicting paths are rejected.
	if _, err := parseUpdate(val(t, bson.D{{Key: "$set", Value: bson.D{{Key: "a.b", Value: 1}}}, {Key: "$unset", Value: bson.D{{Key: "a", Value: 1}}}})); err == nil {
		t.Fatal("conflict not detected")
	}
	// int32 overflow promotes to int64.
	spec, _ = parseUpdate(val(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: int32(math.MaxInt32)}}}}))
	res, err = applyUpdate(spec, old, false)
	if err != nil {
		t.Fatal(err)
	}
	if v := bsoncore.Document(res.doc).Lookup("a"); v.Type != bsoncore.TypeInt64 || v.Int64() != math.MaxInt32+1 {
		t.Fatalf("int32 overflow: %v", v)
	}
	// int64 overflow is an error.
	spec, _ = parseUpdate(val(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: int64(math.MaxInt64)}}}}))
	if _, err := applyUpdate(spec, old, false); err == nil {
		t.Fatal("int64 overflow accepted")
	}
}

func TestResumeTokenRoundTrip(t *testing.T) {
	tok := resumeToken{ts: bson.Timestamp{T: 1700000000, I: 42}, seq: 123456789, invalidate: true}
	got, err := parseResumeToken(bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: tok.doc()})
	if err != nil || got != tok {
		t.Fatalf("round trip %v %v", got, err)
	}
	a := resumeToken{ts: bson.Timestamp{T: 5, I: 1}, seq: 9}.data()
	b := resumeToken{ts: bson.Timestamp{T: 5, I: 1}, seq: 10}.data()
	c := resumeToken{ts: bson.Timestamp{T: 5, I: 2}, seq: 11}.data()
	if !(a < b && b < c) {
		t.Fatal("tokens must sort in oplog order")
	}
	if _, err := parseResumeToken(val(t, bson.D{{Key: "_data", Value: "zz"}})); err == nil {
		t.Fatal("bad token accepted")
	}
}
