package transform

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The conversion of one BSON value to the Postgres value of its column
// (convert and its per-type helpers), apart from row.go, which finds the
// values in a document and reports a refused one.

type reason string

func (r reason) Error() string { return string(r) }

// convert dispatches on the column type; it is kept a table of one case
// per type, and a case that needs more than a type check is a convert*
// function below.
func (c *ColumnSpec) convert(v bson.RawValue) (any, error) {
	switch c.Type {
	case TypeText:
		s, ok := v.StringValueOK()
		if !ok {
			return nil, reason(fmt.Sprintf("expected a string, got %s", typeName(v.Type)))
		}
		return cleanText(s)
	case TypeObjectID:
		return objectIDString(v)
	case TypeBool:
		b, ok := v.BooleanOK()
		if !ok {
			return nil, reason(fmt.Sprintf("expected a boolean, got %s", typeName(v.Type)))
		}
		return b, nil
	case TypeSmallint, TypeInt, TypeBigint:
		return c.convertInt(v)
	case TypeNumeric:
		return c.convertNumeric(v)
	case TypeFloat8:
		return convertFloat8(v)
	case TypeTimestamptz:
		return convertTimestamptz(v)
	case TypeJSONB:
		return jsonbValue(v)
	case TypeTextArray:
		return convertTextArray(v)
	case TypeEnum:
		return c.convertEnum(v)
	}
	return nil, reason(fmt.Sprintf("unsupported column type %s", c.Type))
}

// convertInt checks the column's width itself, so a value that does not
// fit is a rejection naming the field rather than a statement Postgres
// fails.
func (c *ColumnSpec) convertInt(v bson.RawValue) (any, error) {
	n, negZero, err := exactInt(v)
	if err != nil {
		return nil, err
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	switch c.Type {
	case TypeSmallint:
		lo, hi = math.MinInt16, math.MaxInt16
	case TypeInt:
		lo, hi = math.MinInt32, math.MaxInt32
	}
	if n < lo || n > hi {
		return nil, reason(fmt.Sprintf("%d does not fit %s", n, c.Type))
	}
	if err := c.checkSign(n > 0, n == 0, negZero); err != nil {
		return nil, err
	}
	return n, nil
}

// convertNumeric passes the value on as decimal text, never through a
// float: money is exact (DESIGN.md, rule 5).
func (c *ColumnSpec) convertNumeric(v bson.RawValue) (any, error) {
	d, negZero, text, err := toDecimal(v, c.decimal)
	if err != nil {
		return nil, err
	}
	if err := c.checkSign(d.Sign() > 0, d.Sign() == 0, negZero); err != nil {
		return nil, err
	}
	return text, nil
}

// convertFloat8 refuses NaN and Infinity rather than store them (DESIGN.md,
// rule 5: never coerced, rejected with the field and reason).
func convertFloat8(v bson.RawValue) (any, error) {
	switch v.Type {
	case bson.TypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, reason("NaN and Infinity are refused")
		}
		return f, nil
	case bson.TypeInt32:
		return float64(v.Int32()), nil
	}
	return nil, reason(fmt.Sprintf("expected a double, got %s", typeName(v.Type)))
}

// convertTimestamptz accepts a BSON timestamp and an RFC 3339 string
// besides a date, so a time held in either form replicates instead of
// being rejected.
func convertTimestamptz(v bson.RawValue) (any, error) {
	switch v.Type {
	case bson.TypeDateTime:
		return time.UnixMilli(v.DateTime()).UTC(), nil
	case bson.TypeTimestamp:
		t, _ := v.Timestamp()
		return time.Unix(int64(t), 0).UTC(), nil
	case bson.TypeString:
		ts, err := time.Parse(time.RFC3339Nano, v.StringValue())
		if err != nil {
			return nil, reason("string is not an RFC 3339 time")
		}
		return ts.UTC(), nil
	}
	return nil, reason(fmt.Sprintf("expected a date, got %s", typeName(v.Type)))
}

// convertTextArray names the element that fails, so the rejection points
// at it; an empty array is written as {}, not NULL (a nil slice would be).
func convertTextArray(v bson.RawValue) (any, error) {
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, reason(fmt.Sprintf("expected an array, got %s", typeName(v.Type)))
	}
	out := []string{}
	err := forEachElement(arr, func(i int, e bson.RawValue) error {
		s, ok := e.StringValueOK()
		if !ok {
			return reason(fmt.Sprintf("element %d: expected a string, got %s", i, typeName(e.Type)))
		}
		s, err := cleanText(s)
		if err != nil {
			return reason(fmt.Sprintf("element %d: %v", i, err))
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// convertEnum refuses a value the mapping does not list rather than pass
// it on, so a new value in MongoDB is a rejection naming it, not a failed
// statement.
func (c *ColumnSpec) convertEnum(v bson.RawValue) (any, error) {
	s, ok := v.StringValueOK()
	if !ok {
		return nil, reason(fmt.Sprintf("expected a string enum value, got %s", typeName(v.Type)))
	}
	label, ok := c.Values[s]
	if !ok {
		return nil, reason(fmt.Sprintf("unknown enum value %q", s))
	}
	return label, nil
}

func (c *ColumnSpec) checkSign(positive, zero, negZero bool) error {
	switch c.Check {
	case CheckPositive:
		if !positive {
			return reason("must be greater than 0")
		}
	case CheckNonNegative:
		if negZero {
			return reason("negative zero (-0) where the column must not be negative: the sign is ambiguous")
		}
		if !positive && !zero {
			return reason("must not be negative")
		}
	case CheckNonZero:
		if zero {
			return reason("must not be 0")
		}
	}
	return nil
}

// exactInt accepts int32, int64, and doubles or Decimal128 with an exact
// integral value; negZero reports a -0.
func exactInt(v bson.RawValue) (n int64, negZero bool, err error) {
	switch v.Type {
	case bson.TypeInt32:
		return int64(v.Int32()), false, nil
	case bson.TypeInt64:
		return v.Int64(), false, nil
	case bson.TypeDouble:
		f := v.Double()
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) || math.Abs(f) > 1<<53 {
			return 0, false, reason(fmt.Sprintf("%s is not an exact integer", strconv.FormatFloat(f, 'g', -1, 64)))
		}
		return int64(f), f == 0 && math.Signbit(f), nil
	case bson.TypeDecimal128:
		d, negZero, _, err := rawDecimal(v)
		if err != nil {
			return 0, false, err
		}
		if !d.IsInteger() || !d.BigInt().IsInt64() {
			return 0, false, reason(fmt.Sprintf("%s is not an exact int64", d.String()))
		}
		return d.IntPart(), negZero, nil
	}
	return 0, false, reason(fmt.Sprintf("expected an integer, got %s", typeName(v.Type)))
}

func objectIDString(v bson.RawValue) (string, error) {
	switch v.Type {
	case bson.TypeObjectID:
		return v.ObjectID().Hex(), nil
	case bson.TypeString:
		s := v.StringValue()
		if _, err := bson.ObjectIDFromHex(s); err == nil { // 24 hex digits, either case
			return strings.ToLower(s), nil
		}
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		return "", reason(fmt.Sprintf("string %q is not an ObjectId", s))
	}
	return "", reason(fmt.Sprintf("expected an ObjectId, got %s", typeName(v.Type)))
}

// cleanText refuses what a Postgres text column cannot store: NUL bytes
// and invalid UTF-8. Everything else (unicode, control characters) is kept.
func cleanText(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", reason("string is not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", reason("string holds a NUL character, which Postgres text refuses")
	}
	return s, nil
}

var errInvalidArray = reason("the array is not valid BSON")

// forEachElement calls fn for each element of a BSON array (or document)
// in order, without materialising them all; it stops at fn's first error.
func forEachElement(arr []byte, fn func(i int, v bson.RawValue) error) error {
	length, rem, ok := bsoncore.ReadLength(arr)
	if !ok || int(length) != len(arr) || length < 5 {
		return errInvalidArray
	}
	rem = rem[:len(rem)-1] // the terminating NUL
	for i := 0; len(rem) > 0; i++ {
		elem, r, ok := bsoncore.ReadElement(rem)
		if !ok {
			return errInvalidArray
		}
		val, err := elem.ValueErr()
		if err != nil {
			return errInvalidArray
		}
		if err := fn(i, bson.RawValue{Type: bson.Type(val.Type), Value: val.Data}); err != nil {
			return err
		}
		rem = r
	}
	return nil
}
