package transforms_test

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestMoneyEdgesOfIssue14: the built-in mappings refuse what issue 14
// found stored as if exact, naming the field: a lossy double or an
// exponent-form string in a wei column, duplicate field names, and a
// non-canonical Decimal128 payment (IEEE 754-2008 and the server read it
// as 0, the driver as 10384593717069655.257060992658440191). The goldens
// pin the same outcomes for documents Extended JSON can express
// (float_balance, exponent_string_balance, duplicate_*); this covers the
// rest and the boundaries.
func TestMoneyEdgesOfIssue14(t *testing.T) {
	set := builtin(t)
	payments, _ := set.Get("payments")
	destinations, _ := set.Get("derivedDestinations")
	pay := baseDoc(t, "payments")
	dest := baseDoc(t, "derivedDestinations")
	issueBits := bson.NewDecimal128(0x301DFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
	const bitsText = "Decimal128 with bits high 0x301dffffffffffff low 0xffffffffffffffff"

	sweep := func(amount any) bson.D {
		return bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "amount", Value: amount}, {Key: "status", Value: "pending"}}
	}
	for _, tc := range []struct {
		name   string
		coll   string
		doc    bson.D
		field  string // "" when the document maps
		value  string // the rejection's value, when set
		reason string // a part of the reason
	}{
		{name: "non-canonical payment amount", coll: "payments", doc: with(pay, "amount", issueBits),
			field: "amount", value: bitsText, reason: "non-canonical Decimal128 (bits high 0x301dffffffffffff low 0xffffffffffffffff)"},
		{name: "non-canonical amount in payment metadata (jsonb)", coll: "payments",
			doc:   with(pay, "metadata", bson.D{{Key: "quote", Value: bson.D{{Key: "fxRate", Value: issueBits}}}}),
			field: "metadata.quote.fxRate", value: bitsText, reason: "non-canonical Decimal128"},
		{name: "non-canonical sweep amount (child row)", coll: "derivedDestinations", doc: with(dest, "sweeps", bson.A{sweep(issueBits)}),
			field: "sweeps.0.amount", value: bitsText, reason: "non-canonical Decimal128"},
		{name: "payment amount 0.1+0.2 as a double", coll: "payments", doc: with(pay, "amount", 0.30000000000000004),
			field: "amount", reason: "the double 0.30000000000000004 has 17 significant digits"},
		{name: "payment amount 0.1 as a double", coll: "payments", doc: with(pay, "amount", 0.1)},
		{name: "balance double 2^53", coll: "derivedDestinations", doc: with(dest, "lastKnownBalance", float64(1<<53))},
		{name: "balance double 2^53+2", coll: "derivedDestinations", doc: with(dest, "lastKnownBalance", float64(1<<53)+2),
			field: "lastKnownBalance", value: `{"$numberDouble":"9.007199254740994E+15"}`, reason: "the double 9.007199254740994e+15 is beyond 2^53"},
		{name: "balance as a plain wei string", coll: "derivedDestinations", doc: with(dest, "lastKnownBalance", "12345678901234567890123")},
		{name: "sweep amount as an exponent-form string", coll: "derivedDestinations", doc: with(dest, "sweeps", bson.A{sweep("1e+21")}),
			field: "sweeps.0.amount", reason: `the exponent-form string "1e+21" is beyond 2^53`},
		{name: "payment with __v twice (a top-level key no column reads)", coll: "payments", doc: append(append(bson.D{}, pay...), bson.E{Key: "__v", Value: int32(1)}),
			field: "__v", reason: "duplicate field name: __v appears 2 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := payments
			if tc.coll == "derivedDestinations" {
				m = destinations
			}
			row, rej := outcome(t, m, marshal(t, tc.doc), tc.field)
			if tc.field == "" {
				if rej != nil {
					t.Fatalf("rejected: %+v", rej)
				}
				if row == nil {
					t.Fatal("no row")
				}
				return
			}
			if rej == nil {
				t.Fatalf("mapped; want a rejection of %s saying %q", tc.field, tc.reason)
			}
			if rej.Field != tc.field || (tc.value != "" && rej.Value != tc.value) || !strings.Contains(rej.Reason, tc.reason) {
				t.Fatalf("got %+v\nwant field %s, value %s, reason containing %q", rej, tc.field, tc.value, tc.reason)
			}
			if strings.Contains(rej.Error(), "10384593717069655") {
				t.Fatalf("the rejection reads the non-canonical bits as a number: %v", rej)
			}
		})
	}
}
