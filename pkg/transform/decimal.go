package transform

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// DecimalSpec is a numeric(precision, scale) column.
type DecimalSpec struct {
	Precision int
	Scale     int
	// Doubles is how the column takes a double or an exponent-form
	// string; "" is DoublesExact.
	Doubles DoublePolicy
}

// DoublePolicy says how a numeric column takes a value that is only
// approximately the decimal its writer meant: a BSON double, or a decimal
// string in exponent form ("1.2345678901234568e+21", what JavaScript's
// String(Number) writes for a Number of 10^21 or more).
type DoublePolicy string

// Double policies (the column key `doubles`).
const (
	// DoublesExact (the default) accepts such a value only when its digits
	// are certainly the source's at the column's scale (see exactDouble);
	// anything else is a rejection. Money is never rounded by a writer's
	// float arithmetic without someone seeing it.
	DoublesExact DoublePolicy = "exact"
	// DoublesShortest accepts the shortest round-trip decimal form of the
	// double (strconv.FormatFloat(f, 'g', -1, 64)) and the exact value of
	// an exponent-form string, as long as it fits precision and scale. Its
	// digits beyond the 15th, and integers beyond 2^53, may be binary
	// rounding rather than the source's: opt-in per column, for data that
	// is known to be doubles (a measurement, a rate), never for an amount.
	DoublesShortest DoublePolicy = "shortest"
)

// The limits of a double's exactness. maxExactDoubleDigits is DBL_DIG
// (C11 5.2.4.2.2): every decimal of at most 15 significant digits survives
// decimal -> double -> shortest decimal unchanged, so a double whose
// shortest form has at most 15 digits is exactly the decimal that was
// written; with 16 or 17 the trailing digits may be the rounding of the
// binary value (0.1+0.2 is 0.30000000000000004). maxExactDoubleInt is
// 2^53: up to it every integer is a double, beyond it only some are (2^53+1
// is stored as 2^53), so a larger integral double may not be the source's
// integer.
const (
	maxExactDoubleDigits = 15
	maxExactDoubleInt    = 1 << 53
)

// decimalReject is why a value cannot be a decimal of this spec.
type decimalReject string

// ToDecimal converts a BSON value to the exact decimal text Postgres gets:
// plain notation (never an exponent), no more fractional digits than the
// scale and no more integer digits than precision-scale, and never through
// float arithmetic. Accepted: canonical Decimal128, int32, int64, plain
// decimal strings, and doubles and exponent-form strings whose value is
// certainly the source's at the column's scale (exactDouble; with
// spec.Doubles DoublesShortest, their shortest round-trip form). NaN,
// Infinity, a non-canonical Decimal128, null and every other type are
// refused with the reason; nothing becomes 0.
func ToDecimal(v bson.RawValue, spec DecimalSpec) (decimal.Decimal, string, error) {
	d, _, text, err := toDecimal(v, spec)
	return d, text, err
}

// toDecimal is ToDecimal that also reports a negative zero.
func toDecimal(v bson.RawValue, spec DecimalSpec) (d decimal.Decimal, negZero bool, text string, err error) {
	d, negZero, approx, err := rawDecimal(v)
	if err != nil {
		return decimal.Decimal{}, false, "", err
	}
	if approx != "" && spec.Doubles != DoublesShortest {
		if err := exactDouble(d, spec, approx); err != nil {
			return decimal.Decimal{}, false, "", err
		}
	}
	d, text, err = fitDecimal(d, spec)
	return d, negZero, text, err
}

// exactDouble accepts the value d of a double or an exponent-form string
// (approx names it as received, for the message) only when its digits are
// certainly the source's at the column's scale:
//
//   - an integer column (numeric(P,0)): d is integral and |d| <= 2^53, the
//     range in which every integer is a double. A wei balance written as a
//     JS Number (1.2345678901234567e22) lost its low digits before it
//     reached Mongo; storing 12345678901234568000000 would invent them.
//   - a column with a scale (money) or unconstrained: the shortest form has
//     at most 15 significant digits (DBL_DIG). Whether it fits the scale
//     without rounding is fitDecimal's check, after this one.
func exactDouble(d decimal.Decimal, spec DecimalSpec, approx string) error {
	const hint = "write it as a Decimal128 or a plain decimal string (or set `doubles: shortest` on the column to take doubles as their shortest form)"
	if spec.Precision > 0 && spec.Scale == 0 {
		if !d.IsInteger() {
			return decimalReject(fmt.Sprintf("%s is not an integer, and numeric(%d,0) keeps none of its fraction", approx, spec.Precision))
		}
		if d.Abs().Cmp(decimal.NewFromInt(maxExactDoubleInt)) > 0 {
			return decimalReject(fmt.Sprintf("%s is beyond 2^53 (9007199254740992), where a double no longer holds every integer: its low digits may not be the source's; %s", approx, hint))
		}
		return nil
	}
	if n := significantDigits(d); n > maxExactDoubleDigits {
		return decimalReject(fmt.Sprintf("%s has %d significant digits; a double holds only %d exactly, so the rest may be binary rounding, not the source's digits; %s", approx, n, maxExactDoubleDigits, hint))
	}
	return nil
}

// significantDigits counts the digits of d's coefficient without trailing
// zeros (0 for zero): 1500 and 0.0015 have 2.
func significantDigits(d decimal.Decimal) int {
	s := new(big.Int).Abs(d.Coefficient()).String()
	s = strings.TrimRight(s, "0")
	return len(s)
}

// rawDecimal reads any accepted number exactly; negZero reports a negative
// zero (Decimal128 or double -0, or a string such as "-0.00"), which the
// decimal value itself cannot carry. approx is "" for an exact source
// (Decimal128, integers, plain decimal strings) and, for a double or an
// exponent-form string, the value as received for messages ("the double
// 0.30000000000000004", "the exponent-form string \"1e+21\"").
func rawDecimal(v bson.RawValue) (d decimal.Decimal, negZero bool, approx string, err error) {
	switch v.Type {
	case bson.TypeDecimal128:
		d128 := v.Decimal128()
		if d128.IsNaN() {
			return decimal.Decimal{}, false, "", decimalReject("NaN is not an amount")
		}
		if d128.IsInf() != 0 {
			return decimal.Decimal{}, false, "", decimalReject("Infinity is not an amount")
		}
		if err := canonicalDecimal128(d128); err != nil {
			return decimal.Decimal{}, false, "", err
		}
		bi, exp, err := d128.BigInt()
		if err != nil {
			return decimal.Decimal{}, false, "", decimalReject(fmt.Sprintf("invalid Decimal128: %v", err))
		}
		high, _ := d128.GetBytes()
		return decimal.NewFromBigInt(bi, int32(exp)), bi.Sign() == 0 && high>>63 == 1, "", nil
	case bson.TypeInt32:
		return decimal.NewFromInt(int64(v.Int32())), false, "", nil
	case bson.TypeInt64:
		return decimal.NewFromInt(v.Int64()), false, "", nil
	case bson.TypeDouble:
		f := v.Double()
		if math.IsNaN(f) {
			return decimal.Decimal{}, false, "", decimalReject("NaN is not an amount")
		}
		if math.IsInf(f, 0) {
			return decimal.Decimal{}, false, "", decimalReject("Infinity is not an amount")
		}
		// Shortest decimal that round-trips to the same double: 0.1 is
		// "0.1", not 0.1000000000000000055511151231257827.
		short := strconv.FormatFloat(f, 'g', -1, 64)
		d, err := parseDecimalString(short)
		return d, f == 0 && math.Signbit(f), "the double " + short, err
	case bson.TypeString:
		s := v.StringValue()
		d, err := parseDecimalString(s)
		if err == nil && strings.ContainsAny(s, "eE") {
			approx = "the exponent-form string " + quoteTruncated(s)
		}
		return d, err == nil && d.Sign() == 0 && strings.HasPrefix(s, "-"), approx, err
	case bson.TypeNull, bson.TypeUndefined:
		return decimal.Decimal{}, false, "", decimalReject("null is not an amount")
	}
	return decimal.Decimal{}, false, "", decimalReject(fmt.Sprintf("a %s is not a number", typeName(v.Type)))
}

// The largest canonical Decimal128 coefficient is 10^34-1 (34 digits);
// 10^34 as 128 bits:
const (
	tenPow34High = 0x0001ED09BEAD87C0
	tenPow34Low  = 0x378D8E6400000000
)

// canonicalDecimal128 refuses a finite Decimal128 whose coefficient is
// 10^34 or more. IEEE 754-2008 section 3.5.2 (binary integer decimal, the
// encoding BSON uses) defines such a coefficient as non-canonical and its
// value as 0, and so do MongoDB's server and drivers: the BSON Decimal128
// specification (mongodb/specifications, source/bson-decimal128/
// decimal128.md, "To String Representation": "certain other invalid
// representations ... must be treated as zeros, as per IEEE 754-2008") and
// its corpus (source/bson-corpus/tests/decimal128-1.json, "Special -
// Invalid representation treated as 0"). The Go driver's BigInt() returns
// the 113-bit coefficient instead (2^113-1 at exponent -18 reads as
// 10384593717069655.257060992658440191). The writer's intent is unknowable
// either way, so it is never read as a number: the rejection names the
// bits.
//
// From the raw bits (GetBytes: high, low), after NaN and Infinity (bits
// 62..58 11111 and 11110) are excluded: when the two bits after the sign
// (62..61) are 11 the coefficient is the implicit prefix 100 followed by
// high's low 47 bits and low, so it is at least 2^113 > 10^34;
// otherwise it is high's low 49 bits followed by low (113 bits), which can
// still reach 2^113-1.
func canonicalDecimal128(d bson.Decimal128) error {
	high, low := d.GetBytes()
	if high>>61&3 != 3 {
		ch := high & (1<<49 - 1)
		if ch < tenPow34High || ch == tenPow34High && low < tenPow34Low {
			return nil
		}
	}
	return decimalReject(fmt.Sprintf("non-canonical Decimal128 (%s): its coefficient is 10^34 or more, which IEEE 754-2008 and the MongoDB server read as 0 and the Go driver as a different number; not read as a number", decimal128Bits(high, low)))
}

// decimal128Bits names the raw bits of a Decimal128.
func decimal128Bits(high, low uint64) string {
	return fmt.Sprintf("bits high 0x%016x low 0x%016x", high, low)
}

func parseDecimalString(s string) (decimal.Decimal, error) {
	t := strings.TrimSpace(s)
	if t != s || t == "" {
		return decimal.Decimal{}, decimalReject(fmt.Sprintf("%q is not a decimal number", s))
	}
	switch strings.ToLower(strings.TrimLeft(t, "+-")) {
	case "nan", "inf", "infinity":
		return decimal.Decimal{}, decimalReject(fmt.Sprintf("%q is not an amount", s))
	}
	for _, r := range t {
		if !(r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+' || r == 'e' || r == 'E') {
			return decimal.Decimal{}, decimalReject(fmt.Sprintf("%q is not a decimal number", s))
		}
	}
	d, err := decimal.NewFromString(t)
	if err != nil {
		return decimal.Decimal{}, decimalReject(fmt.Sprintf("%q is not a decimal number", s))
	}
	return d, nil
}

// fitDecimal checks precision and scale without rounding: a value that
// Postgres would round or refuse is rejected here with the reason.
func fitDecimal(d decimal.Decimal, spec DecimalSpec) (decimal.Decimal, string, error) {
	// Normalise: strip trailing fractional zeros so 1.500 fits scale 1.
	coef := new(big.Int).Set(d.Coefficient())
	exp := d.Exponent()
	ten := big.NewInt(10)
	mod := new(big.Int)
	for exp < 0 && coef.Sign() != 0 {
		q, m := new(big.Int).QuoRem(coef, ten, mod)
		if m.Sign() != 0 {
			break
		}
		coef, exp = q, exp+1
	}
	if coef.Sign() == 0 {
		exp = 0
	}
	norm := decimal.NewFromBigInt(coef, exp)
	fracDigits := 0
	if exp < 0 {
		fracDigits = int(-exp)
	}
	if spec.Precision > 0 {
		if fracDigits > spec.Scale {
			return decimal.Decimal{}, "", decimalReject(fmt.Sprintf("%s has %d fractional digits; the column keeps %d (Postgres would round it)", norm.String(), fracDigits, spec.Scale))
		}
		intDigits := len(new(big.Int).Abs(norm.BigInt()).String())
		if norm.BigInt().Sign() == 0 {
			intDigits = 0
		}
		if intDigits > spec.Precision-spec.Scale {
			return decimal.Decimal{}, "", decimalReject(fmt.Sprintf("%s has %d integer digits; numeric(%d,%d) holds %d", norm.String(), intDigits, spec.Precision, spec.Scale, spec.Precision-spec.Scale))
		}
	}
	// decimal.String() is plain notation, never an exponent.
	return norm, norm.String(), nil
}

func (r decimalReject) Error() string { return string(r) }

func typeName(t bson.Type) string {
	switch t {
	case bson.TypeDouble:
		return "double"
	case bson.TypeString:
		return "string"
	case bson.TypeEmbeddedDocument:
		return "document"
	case bson.TypeArray:
		return "array"
	case bson.TypeBinary:
		return "binary"
	case bson.TypeObjectID:
		return "ObjectId"
	case bson.TypeBoolean:
		return "boolean"
	case bson.TypeDateTime:
		return "date"
	case bson.TypeNull:
		return "null"
	case bson.TypeInt32:
		return "int32"
	case bson.TypeInt64:
		return "int64"
	case bson.TypeTimestamp:
		return "timestamp"
	case bson.TypeDecimal128:
		return "Decimal128"
	}
	return t.String()
}
