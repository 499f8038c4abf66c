package event_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func rawID(t *testing.T, v any) bson.RawValue {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "_id", Value: v}})
	if err != nil {
		t.Fatalf("marshal %T %v: %v", v, v, err)
	}
	return bson.Raw(b).Lookup("_id")
}

const hexID = "65a1b2c3d4e5f60718293a4b"

// TestKeyStringIsTyped: the key of each _id, and no two _ids MongoDB
// tells apart share one (the collisions first).
func TestKeyStringIsTyped(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex(hexID)
	cases := []struct {
		name string
		id   any
		want string
	}{
		{"ObjectId", oid, hexID},
		{"string of its hex", hexID, `"` + hexID + `"`},
		{"string of its hex in upper case", "65A1B2C3D4E5F60718293A4B", `"65A1B2C3D4E5F60718293A4B"`},
		{"int32 7", int32(7), `{"$numberLong":"7"}`},
		{"string 7", "7", "7"},
		{"string of int32 7's old key", `{"$numberInt":"7"}`, `"{\"$numberInt\":\"7\"}"`},
		{"string of int64 7's key", `{"$numberLong":"7"}`, `"{\"$numberLong\":\"7\"}"`},
		{"plain string", "user-42", "user-42"},
		{"23 hex digits", hexID[:23], hexID[:23]},
		{"string beginning with a quote", `"q`, `"\"q"`},
		{"string with control bytes", "{\n\t\x01\\", `"{\n\t\u0001\\"`},
		{"non-ASCII kept", "{é\u2028", "\"{é\u2028\""},
		{"boolean", true, "true"},
		{"string true", "true", `"true"`},
		{"null", nil, "null"},
		{"string null", "null", `"null"`},
		{"string false", "false", `"false"`},
		{"empty string", "", ""},
		{"double 7.5", 7.5, `{"$numberDecimal":"7.5"}`},
		{"date", bson.NewDateTimeFromTime(time.UnixMilli(1700000000000)), `{"$date":{"$numberLong":"1700000000000"}}`},
		{"embedded document", bson.D{{Key: "a", Value: int32(1)}}, `{"a":{"$numberInt":"1"}}`},
		{"string of that document's key", `{"a":{"$numberInt":"1"}}`, `"{\"a\":{\"$numberInt\":\"1\"}}"`},
		{"binary", bson.Binary{Subtype: 4, Data: make([]byte, 16)}, `{"$binary":{"base64":"AAAAAAAAAAAAAAAAAAAAAA==","subType":"04"}}`},
		{"symbol", bson.Symbol(hexID), `"` + hexID + `"`},
		{"minKey", bson.MinKey{}, `{"$minKey":1}`},
	}
	seen := map[string]string{}
	for _, c := range cases {
		got := event.KeyString(rawID(t, c.id))
		if got != c.want {
			t.Fatalf("%s: KeyString = %s, want %s", c.name, got, c.want)
		}
		if c.name == "symbol" { // the same _id as the string, in MongoDB's _id index
			continue
		}
		if prev, dup := seen[got]; dup {
			t.Fatalf("%s and %s share the key %s", prev, c.name, got)
		}
		seen[got] = c.name
	}
}

// TestNumericIDsKeyByValue: the _id 7 of every numeric type is one
// document (MongoDB: duplicate key), so one key; 7.5 too.
func TestNumericIDsKeyByValue(t *testing.T) {
	d := func(s string) bson.Decimal128 {
		v, err := bson.ParseDecimal128(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, g := range [][]any{
		{int32(7), int64(7), 7.0, d("7"), d("7.000")},
		{7.5, d("7.5"), d("7.50")},
		{0.0, math.Copysign(0, -1), int32(0), d("-0.00")},
	} {
		want := event.KeyString(rawID(t, g[0]))
		for _, v := range g[1:] {
			if got := event.KeyString(rawID(t, v)); got != want {
				t.Fatalf("%T %v: key %s, want %s (the key of %T %v)", v, v, got, want, g[0], g[0])
			}
		}
	}
	if a, b := event.KeyString(rawID(t, 0.1)), event.KeyString(rawID(t, d("0.1"))); a == b {
		t.Fatalf("the double 0.1 and the decimal 0.1 share the key %s; MongoDB holds them different", a)
	}
}

// TestParseKeyInvertsKeyString: every key names its _id again, and
// re-keys to itself.
func TestParseKeyInvertsKeyString(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex(hexID)
	for _, v := range []any{oid, hexID, "65A1B2C3D4E5F60718293A4B", "7", `{"$numberInt":"7"}`, "user-42", `"q`, "{\n\t\x01\\", "{é\u2028",
		"true", "null", "", "a b,c", int32(7), int64(-9), 7.5, 0.1, 1e300, math.Inf(-1), math.NaN(), true, false, nil,
		bson.NewDateTimeFromTime(time.UnixMilli(1700000000000)), bson.D{{Key: "a", Value: "x"}}, bson.MaxKey{}} {
		id := rawID(t, v)
		k := event.KeyString(id)
		back, err := event.ParseKey(k)
		if err != nil {
			t.Fatalf("%T %v: ParseKey(%s): %v", v, v, k, err)
		}
		if again := event.KeyString(back); again != k {
			t.Fatalf("%T %v: key %s parses to %s %v, whose key is %s", v, v, k, back.Type, back, again)
		}
		switch id.Type {
		case bson.TypeDouble, bson.TypeInt32, bson.TypeInt64:
			// A number comes back in its key's type: equal by value.
		default:
			if back.Type != id.Type || string(back.Value) != string(id.Value) {
				t.Fatalf("%T %v: key %s parses to %s %v", v, v, k, back.Type, back)
			}
		}
	}
}

// TestCanonicalKey: ids as an operator may give them.
func TestCanonicalKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{hexID, hexID},
		{"65A1B2C3D4E5F60718293A4B", hexID}, // 24 hex digits are an ObjectId, any case
		{`"65A1B2C3D4E5F60718293A4B"`, `"65A1B2C3D4E5F60718293A4B"`}, // ... unless quoted
		{`"plain"`, "plain"}, // a quoted string that needs no quotes
		{`{"$numberInt":"7"}`, `{"$numberLong":"7"}`},
		{`{"$numberLong":"7"}`, `{"$numberLong":"7"}`},
		{`{"$numberDouble":"7.0"}`, `{"$numberLong":"7"}`},
		{`{"$numberDouble":"7.5"}`, `{"$numberDecimal":"7.5"}`},
		{`{"$numberDecimal":"7.50"}`, `{"$numberDecimal":"7.5"}`},
		{`{"$numberDouble":"0.1"}`, `{"$numberDouble":"0.1000000000000000055511151231257827021181583404541015625"}`},
		{`{"$numberDecimal":"NaN"}`, `{"$numberDouble":"NaN"}`},
		{"7", "7"},
		{"true", "true"},
		{`"true"`, `"true"`},
	} {
		got, err := event.CanonicalKey(c.in)
		if err != nil || got != c.want {
			t.Fatalf("CanonicalKey(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`"unterminated`, `"a" "b"`, `{"$numberLong": }`, `{not json}`, `{"$numberInt":"x"}`} {
		if k, err := event.CanonicalKey(bad); !errors.Is(err, event.ErrBadKey) {
			t.Fatalf("CanonicalKey(%s) = %s, %v; want ErrBadKey", bad, k, err)
		}
	}
}
