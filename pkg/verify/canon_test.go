package verify

import (
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestCanonicalValues(t *testing.T) {
	cases := []struct {
		name           string
		k              kind
		mongo          any
		pg             string // Postgres text form, for kinds read as text
		equal          bool
		wantMongoCanon string
	}{
		{"numeric scale", kNumeric, "1099.99", "1099.990000000000000000", true, "1099.99"},
		{"numeric 18th place", kNumeric, "1099.99", "1099.990000000000000001", false, "1099.99"},
		{"numeric zero", kNumeric, "0", "0.000000000000000000", true, "0"},
		{"numeric negative", kNumeric, "-30", "-30.000000000000000000", true, "-30"},
		{"numeric wei", kNumeric, "115792089237316195423570985008687907853269984665640564039457584007913129639935",
			"115792089237316195423570985008687907853269984665640564039457584007913129639935", true, "115792089237316195423570985008687907853269984665640564039457584007913129639935"},
		{"numeric NaN in Postgres", kNumeric, "1", "NaN", false, "1"},
		{"jsonb key order and spacing", kJSON, `{"b":1,"a":{"y":[1,2],"x":"s"}}`, `{"a": {"x": "s", "y": [1, 2]}, "b": 1}`, true, `{"a":{"x":"s","y":[1,2]},"b":1}`},
		{"jsonb numbers exactly", kJSON, `{"$numberDecimal":"1.10"}`, `{"$numberDecimal": "1.10"}`, true, `{"$numberDecimal":"1.10"}`},
		{"jsonb number scale", kJSON, `{"n":1.0}`, `{"n": 1}`, true, `{"n":1}`},
		{"jsonb differs", kJSON, `{"n":1}`, `{"n": 2}`, false, `{"n":1}`},
		{"jsonb array order matters", kJSON, `[1,2]`, `[2, 1]`, false, `[1,2]`},
		{"text[] in order", kArray, []string{"a", "ü"}, `["a", "ü"]`, true, `["a","ü"]`},
		{"text[] order differs", kArray, []string{"a", "b"}, `["b", "a"]`, false, `["a","b"]`},
		{"text[] empty", kArray, []string{}, `[]`, true, `[]`},
		{"text exact", kText, "Айгерим \t\u2028", "Айгерим \t\u2028", true, "Айгерим \t\u2028"},
		{"text case", kText, "a", "A", false, "a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.k.expected(tc.mongo)
			if want.s != tc.wantMongoCanon {
				t.Errorf("canonical Mongo value %q, want %q", want.s, tc.wantMongoCanon)
			}
			d := tc.k.dest()
			if err := d.(interface{ Scan(any) error }).Scan(tc.pg); err != nil {
				t.Fatal(err)
			}
			got := tc.k.stored(d)
			if (got == want) != tc.equal {
				t.Fatalf("mongo %q vs postgres %q: equal = %v, want %v", want, got, got == want, tc.equal)
			}
		})
	}
}

func TestCanonicalTimeAndNull(t *testing.T) {
	at := time.Date(2024, 3, 16, 10, 7, 0, 500_000_000, time.UTC)
	if got := kTime.expected(at).s; got != "2024-03-16T10:07:00.500000Z" {
		t.Fatalf("time %q", got)
	}
	local := at.In(time.FixedZone("ALMT", 6*3600))
	if kTime.expected(local) != kTime.expected(at) {
		t.Fatal("the same instant in another zone compares unequal")
	}
	if kTime.expected(at.Add(time.Nanosecond)) != kTime.expected(at) {
		t.Fatal("nanoseconds Postgres cannot store make a difference")
	}
	if kTime.expected(at.Add(time.Microsecond)) == kTime.expected(at) {
		t.Fatal("a microsecond Postgres stores makes no difference")
	}
	for _, k := range []kind{kText, kNumeric, kJSON, kArray, kBool, kInt, kTime} {
		if !k.expected(nil).null || !k.stored(k.dest()).null {
			t.Fatalf("kind %d: nil is not NULL", k)
		}
		if k.expected(nil) == k.expected("") && k != kBool && k != kInt && k != kTime {
			t.Fatalf("kind %d: NULL equals the empty string", k)
		}
	}
}

func TestKeyIDs(t *testing.T) {
	oid := bson.NewObjectID()
	raw := func(v any) bson.RawValue {
		typ, b, err := bson.MarshalValue(v)
		if err != nil {
			t.Fatal(err)
		}
		return bson.RawValue{Type: typ, Value: b}
	}
	// Typed keys name one value: the one whose key they are.
	for _, v := range []any{oid, "plain-string", oid.Hex(), int32(7), int64(1) << 40, `{"$numberInt":"7"}`, true} {
		key := event.KeyString(raw(v))
		ids := keyIDs(key)
		if len(ids) != 1 {
			t.Fatalf("keyIDs(%s) = %v, want one value", key, ids)
		}
		got, ok := ids[0].(bson.RawValue)
		if !ok || event.KeyString(got) != key {
			t.Fatalf("keyIDs(%s) = %v, whose key is not %s", key, ids, key)
		}
	}
}

func TestCompareIDs(t *testing.T) {
	raw := func(v any) bson.RawValue {
		b, err := bson.Marshal(bson.D{{Key: "v", Value: v}})
		if err != nil {
			t.Fatal(err)
		}
		return bson.Raw(b).Lookup("v")
	}
	a, b := bson.NewObjectID(), bson.NewObjectID()
	for _, tc := range []struct {
		x, y any
		want int
		ok   bool
	}{
		{a, b, -1, true}, {b, a, 1, true}, {a, a, 0, true},
		{int32(5), int64(7), -1, true}, {"b", "a", 1, true},
		{int32(1), "a", -1, true}, // numbers sort before strings
		{"z", a, -1, true},        // strings before ObjectIds
		{bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 2}}, 0, false},
	} {
		got, ok := compareIDs(raw(tc.x), raw(tc.y))
		if got != tc.want || ok != tc.ok {
			t.Errorf("compareIDs(%v, %v) = %d, %v; want %d, %v", tc.x, tc.y, got, ok, tc.want, tc.ok)
		}
	}
}
