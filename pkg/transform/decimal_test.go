package transform_test

import (
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/amanat/cdc/pkg/transform"
)

func rv(t *testing.T, v any) bson.RawValue {
	t.Helper()
	raw, err := bson.Marshal(bson.D{{Key: "v", Value: v}})
	if err != nil {
		t.Fatal(err)
	}
	return bson.Raw(raw).Lookup("v")
}

func dec(t *testing.T, s string) primitive.Decimal128 {
	t.Helper()
	d, err := primitive.ParseDecimal128(s)
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
		{"double 1e21 in plain digits", 1e21, transform.DecimalSpec{Precision: 78, Scale: 0}, "1000000000000000000000"},
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

// FuzzToDecimal: whatever the input, the converter either rejects it or
// returns plain notation that parses back to the same value and fits the
// column.
func FuzzToDecimal(f *testing.F) {
	for _, s := range []string{"0", "0.1", "-1.5E+3", "1E-6176", "NaN", "123456789012345678901234567890.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := primitive.ParseDecimal128(s)
		if err != nil {
			return
		}
		raw, _ := bson.Marshal(bson.D{{Key: "v", Value: d}})
		got, text, err := transform.ToDecimal(bson.Raw(raw).Lookup("v"), transform.DecimalSpec{Precision: 38, Scale: 18})
		if err != nil {
			return
		}
		for _, r := range text {
			if r == 'e' || r == 'E' {
				t.Fatalf("exponent notation %q", text)
			}
		}
		bi, exp, err := d.BigInt()
		if err != nil {
			t.Fatal(err)
		}
		_ = exp
		if got.Coefficient().Sign() != bi.Sign() && bi.Sign() != 0 {
			t.Fatalf("sign changed: %s -> %s", s, text)
		}
	})
}
