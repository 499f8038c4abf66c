package transform

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsontype"
)

// DecimalSpec is a numeric(precision, scale) column.
type DecimalSpec struct {
	Precision int
	Scale     int
}

// decimalReject is why a value cannot be a decimal of this spec.
type decimalReject string

// ToDecimal converts a BSON value to the exact decimal text Postgres gets:
// plain notation (never an exponent), no more fractional digits than the
// scale and no more integer digits than precision-scale, and never through
// float arithmetic. Accepted: Decimal128, int32, int64, numeric strings and
// doubles (through their shortest round-trip decimal form). NaN, Infinity,
// null and every other type are refused with the reason; nothing becomes 0.
func ToDecimal(v bson.RawValue, spec DecimalSpec) (decimal.Decimal, string, error) {
	d, _, err := rawDecimal(v)
	if err != nil {
		return decimal.Decimal{}, "", err
	}
	return fitDecimal(d, spec)
}

// rawDecimal reads any accepted number exactly; negZero reports a negative
// zero (Decimal128 or double -0, or a string such as "-0.00"), which the
// decimal value itself cannot carry.
func rawDecimal(v bson.RawValue) (d decimal.Decimal, negZero bool, err error) {
	switch v.Type {
	case bsontype.Decimal128:
		d128 := v.Decimal128()
		if d128.IsNaN() {
			return decimal.Decimal{}, false, decimalReject("NaN is not an amount")
		}
		if d128.IsInf() != 0 {
			return decimal.Decimal{}, false, decimalReject("Infinity is not an amount")
		}
		bi, exp, err := d128.BigInt()
		if err != nil {
			return decimal.Decimal{}, false, decimalReject(fmt.Sprintf("invalid Decimal128: %v", err))
		}
		high, _ := d128.GetBytes()
		return decimal.NewFromBigInt(bi, int32(exp)), bi.Sign() == 0 && high>>63 == 1, nil
	case bsontype.Int32:
		return decimal.NewFromInt(int64(v.Int32())), false, nil
	case bsontype.Int64:
		return decimal.NewFromInt(v.Int64()), false, nil
	case bsontype.Double:
		f := v.Double()
		if math.IsNaN(f) {
			return decimal.Decimal{}, false, decimalReject("NaN is not an amount")
		}
		if math.IsInf(f, 0) {
			return decimal.Decimal{}, false, decimalReject("Infinity is not an amount")
		}
		// Shortest decimal that round-trips to the same double: 0.1 is
		// "0.1", not 0.1000000000000000055511151231257827.
		d, err := parseDecimalString(strconv.FormatFloat(f, 'g', -1, 64))
		return d, f == 0 && math.Signbit(f), err
	case bsontype.String:
		s := v.StringValue()
		d, err := parseDecimalString(s)
		return d, err == nil && d.Sign() == 0 && strings.HasPrefix(s, "-"), err
	case bsontype.Null, bsontype.Undefined:
		return decimal.Decimal{}, false, decimalReject("null is not an amount")
	}
	return decimal.Decimal{}, false, decimalReject(fmt.Sprintf("a %s is not a number", typeName(v.Type)))
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

func typeName(t bsontype.Type) string {
	switch t {
	case bsontype.Double:
		return "double"
	case bsontype.String:
		return "string"
	case bsontype.EmbeddedDocument:
		return "document"
	case bsontype.Array:
		return "array"
	case bsontype.Binary:
		return "binary"
	case bsontype.ObjectID:
		return "ObjectId"
	case bsontype.Boolean:
		return "boolean"
	case bsontype.DateTime:
		return "date"
	case bsontype.Null:
		return "null"
	case bsontype.Int32:
		return "int32"
	case bsontype.Int64:
		return "int64"
	case bsontype.Timestamp:
		return "timestamp"
	case bsontype.Decimal128:
		return "Decimal128"
	}
	return t.String()
}
