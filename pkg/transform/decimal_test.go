package transform_test

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/transform"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func rv(t *testing.T, v any) bson.RawValue {
	t.Helper()
	raw, err := bson.Marshal(bson.D{{Key: "v", Value: v}})
	if err != nil {
		t.Fatal(err)
	}
	return bson.Raw(raw).Lookup("v")
}

func dec(t *testing.T, s string) bson.Decimal128 {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestToDecimal(t *testing.T) {
	money := transform.DecimalSpec{Precision: 38, Scale: 18}
	for _, tc := range []struct {
		name string
		in   any
		spec transform.DecimalSpec
		want string // "" means rejected
	}{
		{"decimal128 plain", dec(t, "1234.5"), money, "1234.5"},
		{"decimal128 exponent form never reaches postgres", dec(t, "1.5E+3"), money, "1500"},
		{"decimal128 18 places", dec(t, "0.000000000000000001"), money, "0.000000000000000001"},
		{"decimal128 19 places rounds in postgres: rejected", dec(t, "0.0000000000000000001"), money, ""},
		{"trailing zeros beyond scale are exact", dec(t, "1.50000000000000000000000"), money, "1.5"},
		{"34 significant digits too wide for 38,18", dec(t, "1234567890123456789012345678901234"), money, ""},
		{"20 integer digits fit", "99999999999999999999.999999999999999999", money, "99999999999999999999.999999999999999999"},
		{"NaN", dec(t, "NaN"), money, ""},
		{"Infinity", dec(t, "Infinity"), money, ""},
		{"-Infinity", dec(t, "-Infinity"), money, ""},
		{"largest exponent", dec(t, "9.999999999999999999999999999999999E+6144"), money, ""},
		{"smallest exponent", dec(t, "1E-6176"), money, ""},
		{"negative zero is zero", dec(t, "-0"), money, "0"},
		{"double 0.1 is its shortest form", 0.1, money, "0.1"},
		{"double 1e21 beyond 2^53 in an integer column", 1e21, transform.DecimalSpec{Precision: 78, Scale: 0}, ""},
		{"double 1e21 in plain digits when shortest is allowed", 1e21, transform.DecimalSpec{Precision: 78, Scale: 0, Doubles: transform.DoublesShortest}, "1000000000000000000000"},
		{"double 1e21 too wide for money", 1e21, money, ""},
		{"double 5e-324 beyond scale", 5e-324, money, ""},
		{"double NaN", math.NaN(), money, ""},
		{"int32", int32(-42), money, "-42"},
		{"int64", int64(9007199254740993), money, "9007199254740993"},
		{"numeric string", "12.340", money, "12.34"},
		{"string with exponent", "1e3", money, "1000"},
		{"string NaN", "NaN", money, ""},
		{"string junk", "12abc", money, ""},
		{"string with spaces", " 1", money, ""},
		{"null is not zero", nil, money, ""},
		{"bool", true, money, ""},
		// Decimal128 boundaries (IEEE 754-2008 decimal128: 34 significant
		// digits, exponents -6176 .. +6111 on the integer coefficient).
		{"34 significant digits that fit 38,18", dec(t, "1234567890123456.789012345678901234"), money, "1234567890123456.789012345678901234"},
		{"34 significant digits, 20 integer digits", dec(t, "12345678901234567890.12345678901234"), money, "12345678901234567890.12345678901234"},
		{"34 significant digits, 21 integer digits", dec(t, "123456789012345678901.2345678901234"), money, ""},
		{"34 nines fit numeric(78,0)", dec(t, "9999999999999999999999999999999999"), transform.DecimalSpec{Precision: 78, Scale: 0}, "9999999999999999999999999999999999"},
		{"largest finite value", dec(t, "9.999999999999999999999999999999999E+6144"), transform.DecimalSpec{Precision: 78, Scale: 0}, ""},
		{"largest exponent, clamped form", dec(t, "1E+6144"), transform.DecimalSpec{Precision: 78, Scale: 0}, ""},
		{"zero with the largest exponent", dec(t, "0E+6111"), money, "0"},
		{"zero with the smallest exponent", dec(t, "0E-6176"), money, "0"},
		{"smallest normal", dec(t, "1.000000000000000000000000000000000E-6143"), money, ""},
		{"subnormal", dec(t, "1E-6170"), money, ""},
		{"smallest subnormal", dec(t, "-1E-6176"), money, ""},
		{"negative zero with exponent", dec(t, "-0E-6176"), money, "0"},
		{"-NaN", dec(t, "-NaN"), money, ""},
		{"signalling NaN", bson.NewDecimal128(0x7E00000000000000, 0), money, ""},
		{"NaN with payload", bson.NewDecimal128(0x7C00000000000000, 12345), money, ""},
		{"Infinity with payload bits", bson.NewDecimal128(0x7800000000000001, 1), money, ""},
		{"negative 34 digits", dec(t, "-0.000000000000000001"), money, "-0.000000000000000001"},
		// Doubles go through their shortest round-trip decimal, never
		// through float arithmetic afterwards.
		{"double 0.1+0.2 has 17 digits: rejected", pointOnePlusPointTwo(), money, ""},
		{"double 0.1+0.2 keeps its own shortest form when allowed", pointOnePlusPointTwo(), transform.DecimalSpec{Precision: 38, Scale: 18, Doubles: transform.DoublesShortest}, "0.30000000000000004"},
		{"double 1e-7 in plain digits", 1e-7, money, "0.0000001"},
		{"double 2^53 in an integer column", 9007199254740992.0, transform.DecimalSpec{Precision: 78, Scale: 0}, "9007199254740992"},
		{"double 2^53 has 16 digits: rejected by money", 9007199254740992.0, money, ""},
		{"double max too wide for money", math.MaxFloat64, money, ""},
		{"double max in plain digits unconstrained, shortest allowed", math.MaxFloat64, transform.DecimalSpec{Doubles: transform.DoublesShortest}, "179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"},
		{"double 5e-324 in plain digits unconstrained", 5e-324, transform.DecimalSpec{}, "0." + strings.Repeat("0", 323) + "5"},
		{"double -0 is zero", math.Copysign(0, -1), money, "0"},
		{"double +Inf", math.Inf(1), money, ""},
		{"double -Inf", math.Inf(-1), money, ""},
		{"int64 max", int64(math.MaxInt64), money, "9223372036854775807"},
		{"int64 min too wide for numeric(18,0)", int64(math.MinInt64), transform.DecimalSpec{Precision: 18, Scale: 0}, ""},
		{"string Infinity", "-Infinity", money, ""},
		{"string hex", "0x10", money, ""},
		{"string empty", "", money, ""},
		{"string with comma", "1,5", money, ""},
		{"ObjectId", bson.NewObjectID(), money, ""},
		{"date", bson.NewDateTimeFromTime(time.Unix(0, 0)), money, ""},
		{"wei fits numeric(78,0)", "115792089237316195423570985008687907853269984665640564039457584007913129639935", transform.DecimalSpec{Precision: 78, Scale: 0}, "115792089237316195423570985008687907853269984665640564039457584007913129639935"},
		{"fraction of wei rejected", "1.5", transform.DecimalSpec{Precision: 78, Scale: 0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := transform.ToDecimal(rv(t, tc.in), tc.spec)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("accepted as %q, want a rejection", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzToDecimal: whatever the Decimal128, the converter either rejects it
// or returns plain notation whose value is exactly the input's and fits
// numeric(38,18).
func FuzzToDecimal(f *testing.F) {
	for _, s := range []string{"0", "0.1", "-1.5E+3", "1E-6176", "NaN", "123456789012345678901234567890.5",
		"9.999999999999999999999999999999999E+6144", "-0", "1234567890123456.789012345678901234", "0E-6176"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			return
		}
		checkDecimal128(t, d)
	})
}

// FuzzToDecimal128Bits: any 128-bit pattern (non-canonical encodings, NaN
// payloads, signalling NaN) is handled without panicking, exactly.
func FuzzToDecimal128Bits(f *testing.F) {
	for _, s := range []string{"1", "-1E-6176", "NaN", "Infinity", "9.999999999999999999999999999999999E+6144"} {
		d, _ := bson.ParseDecimal128(s)
		h, l := d.GetBytes()
		f.Add(h, l)
	}
	f.Add(uint64(0x7E00000000000000), uint64(0))
	f.Add(uint64(0x6C10000000000000), uint64(0))                  // large-coefficient form
	f.Add(uint64(0x301DFFFFFFFFFFFF), uint64(math.MaxUint64))     // 2^113-1 E-18 (issue 14)
	f.Add(uint64(0x3041ED09BEAD87C0), uint64(0x378D8E6400000000)) // 10^34
	f.Add(uint64(0x3041ED09BEAD87C0), uint64(0x378D8E63FFFFFFFF)) // 10^34-1
	f.Fuzz(func(t *testing.T, h, l uint64) {
		checkDecimal128(t, bson.NewDecimal128(h, l))
	})
}

func checkDecimal128(t *testing.T, d bson.Decimal128) {
	t.Helper()
	money := transform.DecimalSpec{Precision: 38, Scale: 18}
	raw, _ := bson.Marshal(bson.D{{Key: "v", Value: d}})
	got, text, err := transform.ToDecimal(bson.Raw(raw).Lookup("v"), money)
	if err != nil {
		return
	}
	if strings.ContainsAny(text, "eE") {
		t.Fatalf("%s: exponent notation %q", d, text)
	}
	bi, exp, err := d.BigInt()
	if err != nil {
		t.Fatalf("%s accepted but BigInt fails: %v", d, err)
	}
	if h, _ := d.GetBytes(); h>>61&3 == 3 || new(big.Int).Abs(bi).Cmp(new(big.Int).Exp(big.NewInt(10), big.NewInt(34), nil)) >= 0 {
		t.Fatalf("non-canonical %s (coefficient %v) accepted as %q", d, bi, text)
	}
	want := new(big.Rat).SetInt(bi)
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
	if exp >= 0 {
		want.Mul(want, new(big.Rat).SetInt(scale))
	} else {
		want.Quo(want, new(big.Rat).SetInt(scale))
	}
	back, ok := new(big.Rat).SetString(text)
	if !ok {
		t.Fatalf("%s -> %q does not parse back", d, text)
	}
	if back.Cmp(want) != 0 || got.Rat().Cmp(want) != 0 {
		t.Fatalf("%s -> %q: value changed", d, text)
	}
	intPart, frac, _ := strings.Cut(strings.TrimPrefix(text, "-"), ".")
	if len(frac) > 18 || (intPart != "0" && len(intPart) > 20) {
		t.Fatalf("%s -> %q does not fit numeric(38,18)", d, text)
	}
}

// pointOnePlusPointTwo is 0.1+0.2 computed at run time (a constant
// expression would be exact).
func pointOnePlusPointTwo() float64 {
	a, b := 0.1, 0.2
	return a + b
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// FuzzToDecimalDouble: a double is accepted exactly as its shortest
// round-trip decimal (parsing the text gives back the same double), in
// plain notation, or rejected; never anything else. With the default
// policy an accepted double is certainly the source's: in an integer
// column an integer of at most 2^53, elsewhere at most 15 significant
// digits; an unconstrained column that allows the shortest form accepts
// every finite double.
func FuzzToDecimalDouble(f *testing.F) {
	for _, v := range []float64{0.1, 1e21, 5e-324, math.Copysign(0, -1), math.MaxFloat64, 0.30000000000000004, 123456789.12345678, math.NaN(), math.Inf(-1),
		1 << 53, 1<<53 + 2, 123456789012345, 1234567890123456, 1234567.891} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		raw, _ := bson.Marshal(bson.D{{Key: "v", Value: v}})
		shortestAny := transform.DecimalSpec{Doubles: transform.DoublesShortest}
		for _, spec := range []transform.DecimalSpec{{}, shortestAny, {Precision: 38, Scale: 18}, {Precision: 78, Scale: 0},
			{Precision: 20, Scale: 2, Doubles: transform.DoublesShortest}, {Precision: 78, Scale: 0, Doubles: transform.DoublesShortest}} {
			_, text, err := transform.ToDecimal(bson.Raw(raw).Lookup("v"), spec)
			short := strconv.FormatFloat(v, 'g', -1, 64)
			digits := len(strings.Trim(strings.ReplaceAll(strings.Split(strings.TrimLeft(short, "-0."), "e")[0], ".", ""), "0"))
			if err != nil {
				if spec == shortestAny && !math.IsNaN(v) && !math.IsInf(v, 0) {
					t.Fatalf("%v rejected by an unconstrained column that allows the shortest form: %v", v, err)
				}
				continue
			}
			if strings.ContainsAny(text, "eE") {
				t.Fatalf("%v: exponent notation %q", v, text)
			}
			back, err := strconv.ParseFloat(text, 64)
			if err != nil || back != v {
				t.Fatalf("%v -> %q -> %v (%v): not the same double", v, text, back, err)
			}
			if len(strings.Trim(strings.ReplaceAll(strings.TrimLeft(text, "-0."), ".", ""), "0")) > digits {
				t.Fatalf("%v -> %q has more significant digits than its shortest form %s", v, text, short)
			}
			if spec.Doubles == transform.DoublesShortest {
				continue
			}
			if spec.Precision > 0 && spec.Scale == 0 {
				if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
					t.Fatalf("%v accepted by numeric(%d,0): not an integer of at most 2^53", v, spec.Precision)
				}
			} else if digits > 15 {
				t.Fatalf("%v (%s, %d digits) accepted by %+v: more than 15 significant digits", v, short, digits, spec)
			}
		}
	})
}
