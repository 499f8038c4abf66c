package verify

import (
	"encoding/binary"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// d128 is the 16 BSON bytes of a Decimal128 given as its high and low 64
// bits (little endian: low first).
func d128(hi, lo uint64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[:8], lo)
	binary.LittleEndian.PutUint64(b[8:], hi)
	return b
}

// bits is a canonical Decimal128 of sign, coefficient (decimal digits,
// below 2^113) and exponent, assembled by hand: exponent + 6176 in bits
// 126..113, the coefficient in bits 112..0.
func bits(neg bool, coef string, exp int) []byte {
	c, ok := new(big.Int).SetString(coef, 10)
	if !ok || c.BitLen() > 113 {
		panic("bad coefficient " + coef)
	}
	lo := new(big.Int).And(c, new(big.Int).SetUint64(math.MaxUint64)).Uint64()
	hi := new(big.Int).Rsh(c, 64).Uint64() | uint64(exp+decimal128Bias)<<49
	if neg {
		hi |= 1 << 63
	}
	return d128(hi, lo)
}

func TestDecimal128(t *testing.T) {
	cases := []struct {
		name  string
		b     []byte
		want  string // exact plain text; "" with bad
		bad   string // a substring of why it is no amount
		check func(t *testing.T, got string)
	}{
		{name: "zero", b: bits(false, "0", 0), want: "0"},
		{name: "negative zero has no sign", b: bits(true, "0", -2), want: "0"},
		{name: "zero with the largest exponent", b: bits(false, "0", 6111), want: "0"},
		{name: "one", b: bits(false, "1", 0), want: "1"},
		{name: "money at scale 18", b: bits(false, "1099990000000000000000", -18), want: "1099.99"},
		{name: "the 18th decimal place", b: bits(false, "1099990000000000000001", -18), want: "1099.990000000000000001"},
		{name: "negative fraction", b: bits(true, "15", -1), want: "-1.5"},
		{name: "below one", b: bits(false, "5", -3), want: "0.005"},
		{name: "positive exponent", b: bits(false, "12", 3), want: "12000"},
		{name: "trailing zeros of the coefficient", b: bits(false, "1500", -3), want: "1.5"},
		{name: "int64 max coefficient", b: bits(false, "18446744073709551615", -10), want: "1844674407.3709551615"},
		{name: "34 nines, the largest canonical coefficient", b: func() []byte {
			// 10^34 - 1 = 0x1ED09BEAD87C0378D8E63FFFFFFFF
			return d128(uint64(decimal128Bias)<<49|0x1ED09BEAD87C0, 0x378D8E63FFFFFFFF)
		}(), want: strings.Repeat("9", 34)},
		{name: "10^34 is non-canonical: zero", b: func() []byte {
			return d128(uint64(decimal128Bias)<<49|0x1ED09BEAD87C0, 0x378D8E6400000000)
		}(), want: "0"},
		{name: "2^113 - 1 at scale 18 (what BigInt reads as 10384593717069655.257060992658440191) is zero", b: d128(uint64(decimal128Bias-18)<<49|(1<<49-1), math.MaxUint64), want: "0"},
		{name: "combination 11: non-canonical, zero", b: d128(0x6000000000000000|uint64(decimal128Bias)<<47|0x7fff, math.MaxUint64), want: "0"},
		{name: "negative non-canonical: zero, no sign", b: d128(0xe000000000000000, 1), want: "0"},
		{name: "largest exponent", b: bits(false, "1", 6111), check: func(t *testing.T, got string) {
			if got != "1"+strings.Repeat("0", 6111) {
				t.Fatalf("1E+6111 is %d characters starting %q", len(got), got[:10])
			}
		}},
		{name: "smallest exponent", b: bits(false, "1", -6176), check: func(t *testing.T, got string) {
			if got != "0."+strings.Repeat("0", 6175)+"1" {
				t.Fatalf("1E-6176 is %d characters", len(got))
			}
		}},
		{name: "NaN", b: d128(0x7c00000000000000, 0), bad: "NaN"},
		{name: "signalling NaN", b: d128(0x7e00000000000000, 0), bad: "NaN"},
		{name: "negative NaN", b: d128(0xfc00000000000000, 0), bad: "NaN"},
		{name: "Infinity", b: d128(0x7800000000000000, 0), bad: "Infinity"},
		{name: "-Infinity", b: d128(0xf800000000000000, 0), bad: "-Infinity"},
		{name: "short", b: []byte{1, 2, 3}, bad: "3 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decimal128(tc.b)
			switch {
			case tc.bad != "":
				if got.bad == "" || !strings.Contains(got.bad, tc.bad) {
					t.Fatalf("decoded %q (bad %q), want it refused as %q", got.text, got.bad, tc.bad)
				}
				if !strings.HasPrefix(got.text, "<") {
					t.Fatalf("the marker %q could pass for a value", got.text)
				}
			case got.bad != "":
				t.Fatalf("refused (%s), want %q", got.bad, tc.want)
			case tc.check != nil:
				tc.check(t, got.text)
			case got.text != tc.want:
				t.Fatalf("decoded %q, want %q", got.text, tc.want)
			}
		})
	}
}

// TestDecimal128AgainstParse: every vector the driver can parse decodes
// to the value it was written as (the driver only builds the bits here;
// the decoding is verify's).
func TestDecimal128AgainstParse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1099.990000000000000000", "1099.99"}, {"-0.000000000000000001", "-0.000000000000000001"},
		{"115792089237316195423570985008687", "115792089237316195423570985008687"}, {"1E+30", "1000000000000000000000000000000"},
		{"0.1", "0.1"}, {"-0", "0"}, {"0E-6176", "0"}, {"12345678.123456789012345678", "12345678.123456789012345678"},
		{"9.999999999999999999999999999999999E+6144", "9999999999999999999999999999999999" + strings.Repeat("0", 6111)},
	} {
		d, err := bson.ParseDecimal128(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		hi, lo := d.GetBytes()
		if got := decimal128(d128(hi, lo)); got.bad != "" || got.text != tc.want {
			t.Errorf("%s decoded %q (bad %q), want %q", tc.in, got.text, got.bad, tc.want)
		}
	}
	// The driver's BigInt reads a non-canonical value as a huge number
	// (issue 14, item 4); verify reads it as 0, as the server does.
	nc := bson.NewDecimal128(uint64(decimal128Bias-18)<<49|(1<<49-1), math.MaxUint64)
	bi, exp, err := nc.BigInt()
	if err == nil && bi.Sign() != 0 {
		t.Logf("the driver reads the non-canonical vector as %se%d; verify reads 0", bi, exp)
	}
}

func raw(t *testing.T, v any) bson.RawValue {
	t.Helper()
	typ, b, err := bson.MarshalValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return bson.RawValue{Type: typ, Value: b}
}

func TestNumber(t *testing.T) {
	dec := func(s string) bson.Decimal128 {
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cases := []struct {
		name string
		v    any
		want string
		bad  string
	}{
		{"Decimal128", dec("250.50"), "250.5", ""},
		{"int32", int32(-7), "-7", ""},
		{"int64", int64(math.MaxInt64), "9223372036854775807", ""},
		{"double shortest form", 0.1, "0.1", ""},
		{"double integral", 1e22, "10000000000000000000000", ""},
		{"double beyond 2^53 keeps only its digits", 1.2345678901234567e22, "12345678901234568000000", ""},
		{"double tiny", 5e-324, "0." + strings.Repeat("0", 323) + "5", ""},
		{"double negative zero", math.Copysign(0, -1), "0", ""},
		{"double NaN", math.NaN(), "", "NaN"},
		{"double infinity", math.Inf(1), "", "Inf"},
		{"string plain", "1099.99", "1099.99", ""},
		{"string exponent (JavaScript's String(Number))", "1.2345678901234568e+21", "1234567890123456800000", ""},
		{"string negative exponent", "-25E-2", "-0.25", ""},
		{"string leading point", ".5", "0.5", ""},
		{"string plus sign", "+3", "3", ""},
		{"string negative zero", "-0.00", "0", ""},
		{"string with spaces", " 1", "", "not a decimal"},
		{"string word", "abc", "", "not a decimal"},
		{"string NaN", "NaN", "", "not a decimal"},
		{"string empty exponent", "1e", "", "not a decimal"},
		{"string empty", "", "", "not a decimal"},
		{"string two points", "1.2.3", "", "not a decimal"},
		{"boolean", true, "", "not a number"},
		{"null", bson.Null{}, "", "not a number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := number(raw(t, tc.v))
			if tc.bad != "" {
				if !strings.Contains(got.bad, tc.bad) {
					t.Fatalf("decoded %q (bad %q), want it refused as %q", got.text, got.bad, tc.bad)
				}
				return
			}
			if got.bad != "" || got.text != tc.want {
				t.Fatalf("decoded %q (bad %q), want %q", got.text, got.bad, tc.want)
			}
		})
	}
}

func TestObjectIDAndTimestamp(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("65f500000000000000000001")
	at := time.Date(2024, 3, 16, 10, 5, 0, 123_000_000, time.UTC)
	cases := []struct {
		name string
		fn   func(bson.RawValue) decoded
		v    bson.RawValue
		want string
		bad  string
	}{
		{"ObjectId", objectID, raw(t, oid), "65f500000000000000000001", ""},
		{"hex string lower-cased", objectID, raw(t, "65F5000000000000000000AB"), "65f5000000000000000000ab", ""},
		{"not hex", objectID, raw(t, "65f50000000000000000000z"), "", "not an ObjectId"},
		{"short string", objectID, raw(t, "65f5"), "", "not an ObjectId"},
		{"int", objectID, raw(t, int32(7)), "", "not an ObjectId"},
		{"date to the millisecond in UTC", timestamp, raw(t, bson.NewDateTimeFromTime(at)), "2024-03-16T10:05:00.123000Z", ""},
		{"date before 1970", timestamp, bson.RawValue{Type: bson.TypeDateTime, Value: bsoncore.AppendDateTime(nil, -1)}, "1969-12-31T23:59:59.999000Z", ""},
		{"timestamp seconds", timestamp, raw(t, bson.Timestamp{T: 1710583500, I: 9}), "2024-03-16T10:05:00.000000Z", ""},
		{"RFC 3339 with a zone", timestamp, raw(t, "2024-03-16T16:05:00.123+06:00"), "2024-03-16T10:05:00.123000Z", ""},
		{"not a time", timestamp, raw(t, "yesterday"), "", "not an RFC 3339 time"},
		{"a number is no time", timestamp, raw(t, int64(1)), "", "not a time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.fn(tc.v)
			if tc.bad != "" {
				if !strings.Contains(got.bad, tc.bad) {
					t.Fatalf("decoded %q (bad %q), want it refused as %q", got.text, got.bad, tc.bad)
				}
				return
			}
			if got.bad != "" || got.text != tc.want {
				t.Fatalf("decoded %q (bad %q), want %q", got.text, got.bad, tc.want)
			}
		})
	}
}

// TestPostgresNumericText: Postgres pads numeric::text with zeros to the
// column's scale; only those go, and what is no amount stays unequal to
// every amount.
func TestPostgresNumericText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1099.990000000000000000", "1099.99"}, {"1099.990000000000000001", "1099.990000000000000001"},
		{"0.000000000000000000", "0"}, {"100", "100"}, {"-30.500", "-30.5"}, {"12345678901234568000000", "12345678901234568000000"},
		{"NaN", "<Postgres NaN>"}, {"Infinity", "<Postgres Infinity>"}, {"-Infinity", "<Postgres -Infinity>"},
	} {
		if got := pgNumericText(tc.in); got != tc.want {
			t.Errorf("pgNumericText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Both sides agree on every value of a numeric(38,18) column.
	for _, v := range []string{"0", "1", "-1", "0.000000000000000001", "99999999999999999999.999999999999999999"} {
		s, ok := decimalString(v)
		if !ok {
			t.Fatal(v)
		}
		padded := v
		if !strings.Contains(padded, ".") {
			padded += "."
		}
		frac := len(padded) - strings.Index(padded, ".") - 1
		padded += strings.Repeat("0", 18-frac)
		if got := pgNumericText(padded); got != s {
			t.Errorf("%s: Postgres %s reads %q, Mongo %q", v, padded, got, s)
		}
	}
}
