package transform_test

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/transform"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestDoublesAndExponentStringsAreExactOrRejected: a double, or a decimal
// string in exponent form (what JavaScript's String(Number) writes), goes
// into a numeric column only when its digits are certainly the source's at
// the column's scale: in numeric(P,0) an integer of at most 2^53; with a
// scale, a shortest form of at most 15 significant digits that fits the
// scale. Everything else is refused with the value as received and the
// reason; `doubles: shortest` takes the shortest form explicitly. Plain
// decimal strings, Decimal128 and integers are unchanged.
func TestDoublesAndExponentStringsAreExactOrRejected(t *testing.T) {
	wei := transform.DecimalSpec{Precision: 78, Scale: 0}
	cents := transform.DecimalSpec{Precision: 20, Scale: 2}
	money := transform.DecimalSpec{Precision: 38, Scale: 18}
	int10 := transform.DecimalSpec{Precision: 10, Scale: 0}
	shortest := func(s transform.DecimalSpec) transform.DecimalSpec {
		s.Doubles = transform.DoublesShortest
		return s
	}
	const twoTo53 = 9007199254740992.0
	for _, tc := range []struct {
		name string
		in   any
		spec transform.DecimalSpec
		want string // the decimal text when accepted
		// rejected: every part must be in the reason
		reason []string
	}{
		// Integer columns: integral and |v| <= 2^53.
		{name: "wei double from the issue", in: 1.2345678901234567e22, spec: wei,
			reason: []string{"the double 1.2345678901234568e+22 is beyond 2^53 (9007199254740992)", "Decimal128 or a plain decimal string", "doubles: shortest"}},
		{name: "2^53 exactly", in: twoTo53, spec: wei, want: "9007199254740992"},
		{name: "-2^53 exactly", in: -twoTo53, spec: wei, want: "-9007199254740992"},
		{name: "2^53+2 (the next double)", in: twoTo53 + 2, spec: wei,
			reason: []string{"the double 9.007199254740994e+15 is beyond 2^53"}},
		{name: "-(2^53+2)", in: -(twoTo53 + 2), spec: wei, reason: []string{"the double -9.007199254740994e+15 is beyond 2^53"}},
		{name: "1e21 is integral but beyond 2^53", in: 1e21, spec: wei, reason: []string{"the double 1e+21 is beyond 2^53"}},
		{name: "fraction into an integer column", in: 1.5, spec: int10,
			reason: []string{"the double 1.5 is not an integer, and numeric(10,0) keeps none of its fraction"}},
		{name: "double -0 into an integer column", in: math.Copysign(0, -1), spec: wei, want: "0"},
		{name: "exponent string from JavaScript's String(Number)", in: "1.2345678901234568e+21", spec: wei,
			reason: []string{`the exponent-form string "1.2345678901234568e+21" is beyond 2^53`}},
		{name: "exponent string within 2^53", in: "1.5e3", spec: int10, want: "1500"},
		{name: "exponent string with upper-case E", in: "9.007199254740992E15", spec: wei, want: "9007199254740992"},
		{name: "exponent string fraction into an integer column", in: "1.5e-1", spec: int10,
			reason: []string{`the exponent-form string "1.5e-1" is not an integer`}},

		// Scaled columns: at most 15 significant digits, and fit the scale.
		{name: "0.1 into numeric(20,2) (Postgres shows 0.10)", in: 0.1, spec: cents, want: "0.1"},
		{name: "1234567.891 does not fit scale 2", in: 1234567.891, spec: cents,
			reason: []string{"1234567.891 has 3 fractional digits; the column keeps 2 (Postgres would round it)"}},
		{name: "0.1+0.2 has 17 digits", in: pointOnePlusPointTwo(), spec: money,
			reason: []string{"the double 0.30000000000000004 has 17 significant digits; a double holds only 15 exactly"}},
		{name: "15 digits are exact", in: 1234567890123.45, spec: cents, want: "1234567890123.45"},
		{name: "15 digits, all fractional", in: 0.123456789012345, spec: money, want: "0.123456789012345"},
		{name: "16 digits are not", in: 12345678901234.56, spec: cents,
			reason: []string{"the double 1.234567890123456e+13 has 16 significant digits"}},
		{name: "2^53 has 16 digits in a scaled column", in: twoTo53, spec: money, reason: []string{"has 16 significant digits"}},
		{name: "exponent string with 17 digits in a scaled column", in: "3.0000000000000004e-1", spec: money,
			reason: []string{`the exponent-form string "3.0000000000000004e-1" has 17 significant digits`}},
		{name: "exponent string with few digits in a scaled column", in: "1.5e3", spec: cents, want: "1500"},
		{name: "double 19.99 as money", in: 19.99, spec: money, want: "19.99"},
		{name: "unconstrained: the digit rule", in: pointOnePlusPointTwo(), spec: transform.DecimalSpec{}, reason: []string{"17 significant digits"}},

		// Unchanged: exact sources.
		{name: "plain decimal string keeps its 17 digits", in: "0.30000000000000004", spec: money, want: "0.30000000000000004"},
		{name: "plain wei string beyond 2^53", in: "12345678901234567890123", spec: wei, want: "12345678901234567890123"},
		{name: "Decimal128 beyond 2^53", in: dec(t, "1.2345678901234567E+22"), spec: wei, want: "12345678901234567000000"},
		{name: "int64 2^53+1", in: int64(1<<53 + 1), spec: wei, want: "9007199254740993"},
		{name: "int32", in: int32(7), spec: cents, want: "7"},

		// doubles: shortest accepts what the default refuses, but still
		// never rounds to the scale.
		{name: "shortest: wei double", in: 1.2345678901234567e22, spec: shortest(wei), want: "12345678901234568000000"},
		{name: "shortest: 2^53+2", in: twoTo53 + 2, spec: shortest(wei), want: "9007199254740994"},
		{name: "shortest: exponent string", in: "1.2345678901234568e+21", spec: shortest(wei), want: "1234567890123456800000"},
		{name: "shortest: 0.1+0.2", in: pointOnePlusPointTwo(), spec: shortest(money), want: "0.30000000000000004"},
		{name: "shortest: still no rounding to the scale", in: 1234567.891, spec: shortest(cents),
			reason: []string{"1234567.891 has 3 fractional digits; the column keeps 2"}},
		{name: "shortest: a fraction still does not fit numeric(10,0)", in: 1.5, spec: shortest(int10),
			reason: []string{"1.5 has 1 fractional digits; the column keeps 0"}},
		{name: "shortest: NaN still refused", in: math.NaN(), spec: shortest(money), reason: []string{"NaN is not an amount"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := transform.ToDecimal(rv(t, tc.in), tc.spec)
			if tc.reason == nil {
				if err != nil {
					t.Fatalf("%v into %+v rejected: %v; want %q", tc.in, tc.spec, err, tc.want)
				}
				if got != tc.want {
					t.Fatalf("%v into %+v: got %q, want %q", tc.in, tc.spec, got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("%v into %+v accepted as %q, want a rejection saying %q", tc.in, tc.spec, got, tc.reason)
			}
			for _, part := range tc.reason {
				if !strings.Contains(err.Error(), part) {
					t.Fatalf("%v into %+v: the reason\n  %v\ndoes not say\n  %q", tc.in, tc.spec, err, part)
				}
			}
		})
	}
}

// TestDoublesOption: `doubles` is a numeric column's option (exact by
// default, or shortest), refused elsewhere; a refused double is a
// rejection naming the field, the column and the value as received, and
// bigint columns keep their own rule (exact integers up to 2^53).
func TestDoublesOption(t *testing.T) {
	const head = "{version: 1, collection: c, table: t, "
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown policy", head + `columns: [{column: a, field: a, type: "numeric(78,0)", doubles: round}]}`, `doubles must be exact or shortest, got "round"`},
		{"on a bigint", head + "columns: [{column: a, field: a, type: bigint, doubles: shortest}]}", "doubles is only for numeric(P,S) columns"},
		{"on text", head + "columns: [{column: a, field: a, type: text, doubles: exact}]}", "doubles is only for numeric(P,S) columns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := transform.Parse([]byte(tc.yaml), "bad.yaml")
			if !errors.Is(err, transform.ErrInvalidMapping) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want ErrInvalidMapping saying %q, got %v", tc.want, err)
			}
		})
	}

	m := mustParse(t, head+`columns: [
		{column: balance, field: balance, type: "numeric(78,0)"},
		{column: rate, field: rate, type: "numeric(38,18)", doubles: shortest},
		{column: counter, field: counter, type: bigint}]}`)
	if got := m.Columns[0].Doubles; got != transform.DoublesExact {
		t.Fatalf("default policy %q, want %q", got, transform.DoublesExact)
	}
	lossy := 1.2345678901234567e22
	rej := rejection(t, rowErr(m, doc(t, bson.D{{Key: "balance", Value: lossy}})))
	if rej.Field != "balance" || rej.Column != "balance" || rej.Value != `{"$numberDouble":"1.2345678901234568E+22"}` ||
		!strings.Contains(rej.Reason, "the double 1.2345678901234568e+22 is beyond 2^53") {
		t.Fatalf("imprecise rejection %+v", rej)
	}
	row, err := m.Row(doc(t, bson.D{{Key: "rate", Value: pointOnePlusPointTwo()}}))
	if err != nil {
		t.Fatalf("doubles: shortest refused 0.1+0.2: %v", err)
	}
	if row.Values[1] != "0.30000000000000004" {
		t.Fatalf("doubles: shortest stored %v, want 0.30000000000000004", row.Values[1])
	}
	// bigint: unchanged (exactInt): 2^53 is an exact integer, 2^53+2 not.
	row, err = m.Row(doc(t, bson.D{{Key: "counter", Value: float64(1 << 53)}}))
	if err != nil || row.Values[2] != int64(1<<53) {
		t.Fatalf("bigint 2^53: %v %v", row, err)
	}
	rej = rejection(t, rowErr(m, doc(t, bson.D{{Key: "counter", Value: float64(1<<53) + 2}})))
	if rej.Field != "counter" || rej.Reason != "9.007199254740994e+15 is not an exact integer" {
		t.Fatalf("bigint 2^53+2: %+v", rej)
	}
}

func rowErr(m *transform.Mapping, d bson.Raw) error {
	_, err := m.Row(d)
	return err
}

// issueDecimal128 is the payment of issue 14: coefficient 2^113-1 (all 113
// bits set, non-canonical) at exponent -18. IEEE 754-2008 and the server
// read it as 0; the driver's BigInt as 10384593717069655.257060992658440191.
var issueDecimal128 = bson.NewDecimal128(0x301DFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)

// TestNonCanonicalDecimal128IsNeverANumber: a Decimal128 whose coefficient
// is 10^34 or more is refused naming its bits, in numeric, integer and
// jsonb columns alike; the largest canonical coefficient (10^34-1) is
// still a number.
func TestNonCanonicalDecimal128IsNeverANumber(t *testing.T) {
	// The hazard: what the driver reads from the issue's bits.
	bi, exp, err := issueDecimal128.BigInt()
	if err != nil || bi.String() != "10384593717069655257060992658440191" || exp != -18 {
		t.Fatalf("driver reads the issue vector as %v E%d (%v); the test's premise changed", bi, exp, err)
	}
	const biased = 6176 // exponent 0
	tenPow34 := new(big.Int).Exp(big.NewInt(10), big.NewInt(34), nil)
	bitsOf := func(n *big.Int) (uint64, uint64) {
		low := new(big.Int).And(n, new(big.Int).SetUint64(math.MaxUint64)).Uint64()
		return new(big.Int).Rsh(n, 64).Uint64(), low
	}
	h34, l34 := bitsOf(tenPow34)
	hMax, lMax := bitsOf(new(big.Int).Sub(tenPow34, big.NewInt(1)))
	wei := transform.DecimalSpec{Precision: 78, Scale: 0}
	money := transform.DecimalSpec{Precision: 38, Scale: 18}
	for _, tc := range []struct {
		name      string
		d         bson.Decimal128
		spec      transform.DecimalSpec
		want      string // accepted
		wantHex   string // rejected: the bits the reason names
		wantValue string
	}{
		{name: "issue payment (2^113-1 E-18)", d: issueDecimal128, spec: money,
			wantHex: "bits high 0x301dffffffffffff low 0xffffffffffffffff"},
		{name: "coefficient exactly 10^34", d: bson.NewDecimal128(biased<<49|h34, l34), spec: wei,
			wantHex: "bits high 0x3041ed09bead87c0 low 0x378d8e6400000000"},
		// bson-corpus decimal128-1.json, "Special - Invalid representation
		// treated as 0", "... as -0", "... as 0E3" (combination bits 11).
		{name: "corpus: treated as 0", d: bson.NewDecimal128(0x6C10000000000000, 0), spec: money,
			wantHex: "bits high 0x6c10000000000000 low 0x0000000000000000"},
		{name: "corpus: treated as -0", d: bson.NewDecimal128(0xEC10000000EFBEAD, 0xDE1032547698BADC), spec: money,
			wantHex: "bits high 0xec10000000efbead low 0xde1032547698badc"},
		{name: "corpus: treated as 0E3", d: bson.NewDecimal128(0x6C11FFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF), spec: wei,
			wantHex: "bits high 0x6c11ffffffffffff low 0xffffffffffffffff"},
		{name: "largest canonical coefficient 10^34-1", d: bson.NewDecimal128(biased<<49|hMax, lMax), spec: wei,
			want: "9999999999999999999999999999999999"},
		{name: "10^34-1 parsed", d: dec(t, "9999999999999999999999999999999999"), spec: wei, want: "9999999999999999999999999999999999"},
		{name: "10^34-1 at exponent -18", d: dec(t, "9999999999999999.999999999999999999"), spec: money, want: "9999999999999999.999999999999999999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := transform.ToDecimal(rv(t, tc.d), tc.spec)
			if tc.wantHex == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("non-canonical %s accepted as %q", tc.wantHex, got)
			}
			for _, part := range []string{"non-canonical Decimal128 (" + tc.wantHex + ")", "read as 0", "not read as a number"} {
				if !strings.Contains(err.Error(), part) {
					t.Fatalf("reason %q does not say %q", err, part)
				}
			}
		})
	}

	// In a mapping: numeric, bigint and jsonb columns refuse it, and the
	// rejection's value is the bits, not the driver's number.
	m := mustParse(t, `{version: 1, collection: payments, table: payments, columns: [
		{column: amount, field: amount, type: "numeric(38,18)"},
		{column: n, field: n, type: bigint},
		{column: meta, field: meta, type: jsonb}]}`)
	bits := "Decimal128 with bits high 0x301dffffffffffff low 0xffffffffffffffff"
	for _, tc := range []struct {
		name         string
		doc          bson.D
		field, colum string
	}{
		{"numeric", bson.D{{Key: "amount", Value: issueDecimal128}}, "amount", "amount"},
		{"bigint", bson.D{{Key: "n", Value: issueDecimal128}}, "n", "n"},
		{"inside jsonb", bson.D{{Key: "meta", Value: bson.D{{Key: "quote", Value: bson.D{{Key: "fx", Value: issueDecimal128}}}}}}, "meta.quote.fx", "meta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rej := rejection(t, rowErr(m, doc(t, tc.doc)))
			if rej.Field != tc.field || rej.Column != tc.colum || rej.Value != bits || !strings.Contains(rej.Reason, "non-canonical Decimal128") {
				t.Fatalf("got %+v, want field %s, column %s, value %q", rej, tc.field, tc.colum, bits)
			}
			if strings.Contains(rej.Error(), "10384593717069655") {
				t.Fatalf("the rejection reads the bits as a number: %v", rej)
			}
		})
	}
}
