package mongoid

import (
	"math"
	"math/big"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// MongoDB compares numbers by value, whatever their BSON type: "numeric
// types undergo conversion before comparison"
// (https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/#numeric-types),
// and the _id index is a unique index of KeyStrings in which "the integer
// 42, NumberLong(42), double precision 42.0 and NumberDecimal(42.00) all
// compare equal", the type being kept apart in TypeBits that take no part
// in the comparison (mongodb/mongo src/mongo/db/storage/key_string/README.md,
// "TypeBits"). So a collection cannot hold both {_id: 7} and
// {_id: NumberLong(7)} (duplicate key), and a query {_id: NumberLong(7)}
// finds the document {_id: 7}.
//
// Equality is exact: a decimal equals a double only when its value is the
// double's binary value exactly (compareDecimalToDouble converts the
// decimal to a double rounding toward negative and calls them equal only
// if that conversion is exact, src/mongo/base/compare_numbers.h; the
// KeyString of a decimal that "actually is a double" is that double's,
// BuilderBase::_appendNumberDecimal in key_string.cpp). Decimal128(0.1) and
// the double 0.1 are different values; Decimal128(7.5) and 7.5 are one.
// -0.0 and 0 are one value ("collapsing -0.0 and 0.0 to the same value
// here, the type bits disambiguate", _appendDoubleWithoutTypeBits), and
// every NaN, double or decimal, is one value too (compareDoubles and
// compareDecimals return 0 for two NaNs; both encode as kNumericNaN).

// maxDecimalDigits is Decimal128's precision (IEEE 754-2008 decimal128:
// 34 significant digits).
const maxDecimalDigits = 34

var (
	bigTen             = big.NewInt(10)
	decimal128Overflow = new(big.Int).Exp(bigTen, big.NewInt(maxDecimalDigits), nil)
)

// The keys of the numbers that are not finite: one for every NaN (double
// or decimal, any sign or payload) and one per infinity (a decimal
// infinity equals the double one: its conversion is exact).
const (
	NaNKey    = `{"$numberDouble":"NaN"}`
	PosInfKey = `{"$numberDouble":"Infinity"}`
	NegInfKey = `{"$numberDouble":"-Infinity"}`
)

// NumberKey is the key of a numeric value (int32, int64, double or
// decimal128; ok is false for any other type): one string per value as
// MongoDB compares them, whatever the type, so that the _id 7 of every
// numeric type is one document key and no two different values share one.
//
//   - an integral value in the int64 range: {"$numberLong":"N"} (0 for
//     -0.0 and for a decimal zero of any exponent);
//   - another finite value whose exact decimal expansion has at most 34
//     significant digits (every such decimal128, and the doubles that are
//     short decimals, such as 7.5 or 1E+20): {"$numberDecimal":"S"}, S
//     being the value with no trailing zeros in the scientific notation of
//     the General Decimal Arithmetic to-scientific-string (what the driver
//     prints for that decimal: "7.5", "1E+20", "1.5E-7");
//   - a double whose exact value needs more digits (0.1 is
//     0.1000000000000000055511151231257827021181583404541015625): no
//     decimal128 or integer equals it, and its key is
//     {"$numberDouble":"S"}, S its exact value in the same notation (every
//     digit: strconv.ParseFloat and PostgreSQL's float8 read it back as
//     that double);
//   - NaN and the infinities: NaNKey, PosInfKey, NegInfKey.
//
// Every form is valid canonical Extended JSON of a value equal to the
// number, which is what the key parsers rely on. The migration
// 00018_typed_document_keys.sql computes the same strings in SQL.
//
// A decimal128 whose coefficient is not canonical (at least 10^34, or the
// 0b11 combination form) is zero (IEEE 754-2008 3.5.2, and so in the
// server's decimal library), not the huge number the driver's BigInt
// reads.
func NumberKey(v bson.RawValue) (key string, ok bool) {
	switch v.Type {
	case bson.TypeInt32:
		return longKey(int64(v.Int32())), true
	case bson.TypeInt64:
		return longKey(v.Int64()), true
	case bson.TypeDouble:
		return DoubleKey(v.Double()), true
	case bson.TypeDecimal128:
		return DecimalKey(v.Decimal128()), true
	}
	return "", false
}

// DoubleKey is NumberKey of a double.
func DoubleKey(f float64) string {
	switch {
	case math.IsNaN(f):
		return NaNKey
	case math.IsInf(f, 1):
		return PosInfKey
	case math.IsInf(f, -1):
		return NegInfKey
	case f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63:
		return longKey(int64(f)) // the common case, and -0.0
	}
	// Every float64 is m * 2^e exactly; with e < 0 that is m * 5^-e *
	// 10^e, a finite decimal.
	bits := math.Float64bits(f)
	neg := bits>>63 == 1
	exp := int(bits >> 52 & 0x7ff)
	mant := bits & (1<<52 - 1)
	if exp == 0 {
		exp = 1 // subnormal (or zero): no implicit bit
	} else {
		mant |= 1 << 52
	}
	exp -= 1075
	c := new(big.Int).SetUint64(mant)
	q := 0
	if exp > 0 {
		c.Lsh(c, uint(exp))
	} else if exp < 0 {
		c.Mul(c, new(big.Int).Exp(big.NewInt(5), big.NewInt(int64(-exp)), nil))
		q = exp
	}
	if neg {
		c.Neg(c)
	}
	return exactKey(c, q, true)
}

// DecimalKey is NumberKey of a decimal128.
func DecimalKey(d bson.Decimal128) string {
	if d.IsNaN() {
		return NaNKey
	}
	switch d.IsInf() {
	case 1:
		return PosInfKey
	case -1:
		return NegInfKey
	}
	c, q, err := d.BigInt()
	if err != nil || new(big.Int).Abs(c).Cmp(decimal128Overflow) >= 0 {
		// Non-canonical: zero (see NumberKey). BigInt fails only for
		// NaN and infinities, handled above.
		return longKey(0)
	}
	return exactKey(c, q, false)
}

// longKey is the key of an integral value in the int64 range.
func longKey(n int64) string {
	return `{"$numberLong":"` + strconv.FormatInt(n, 10) + `"}`
}

// exactKey is the key of the finite value c * 10^q; double says whether
// it came from a double (only a double can need more than 34 digits).
func exactKey(c *big.Int, q int, double bool) string {
	if c.Sign() == 0 {
		return longKey(0)
	}
	c = new(big.Int).Set(c)
	// Strip trailing zeros: (c, q) is then unique to the value.
	var r big.Int
	for {
		quo, rem := new(big.Int).QuoRem(c, bigTen, &r)
		if rem.Sign() != 0 {
			break
		}
		c, q = quo, q+1
	}
	if q >= 0 && q <= 18 {
		n := new(big.Int).Mul(c, new(big.Int).Exp(bigTen, big.NewInt(int64(q)), nil))
		if n.IsInt64() {
			return longKey(n.Int64())
		}
	}
	digits := new(big.Int).Abs(c).String()
	s := scientific(c.Sign() < 0, digits, q)
	if len(digits) <= maxDecimalDigits || !double {
		return `{"$numberDecimal":"` + s + `"}`
	}
	return `{"$numberDouble":"` + s + `"}`
}

// scientific writes digits * 10^q (digits without leading zeros) as the
// General Decimal Arithmetic to-scientific-string does
// (https://speleotrove.com/decimal/daconvs.html): plain notation when the
// exponent is at most 0 and the adjusted exponent at least -6, otherwise
// one digit, the rest after a point, and E+n or E-n.
func scientific(neg bool, digits string, q int) string {
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	n := len(digits)
	adj := q + n - 1
	switch {
	case q == 0:
		b.WriteString(digits)
	case q < 0 && adj >= -6:
		if n > -q {
			b.WriteString(digits[:n+q])
			b.WriteByte('.')
			b.WriteString(digits[n+q:])
		} else {
			b.WriteString("0.")
			b.WriteString(strings.Repeat("0", -q-n))
			b.WriteString(digits)
		}
	default:
		b.WriteByte(digits[0])
		if n > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('E')
		if adj >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(adj))
	}
	return b.String()
}
