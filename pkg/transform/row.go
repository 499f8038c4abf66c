package transform

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsontype"
)

// Ref is a reference the sink resolves through id_map before writing Row:
// Values[Col] receives the parent's new_id (or NULL, per Missing).
type Ref struct {
	Col        int
	Column     string
	Field      string
	Collection string
	LegacyID   string
	Missing    MissingPolicy
}

// Row is one target row, Values aligned with Mapping.Columns (the id is
// resolved separately by the sink from the event's key).
type Row struct {
	Values []any
	Refs   []Ref
}

// Row converts a document to a row. A value the column cannot hold exactly
// returns a *Rejection naming the field.
func (m *Mapping) Row(doc bson.Raw) (*Row, error) {
	row := &Row{Values: make([]any, len(m.Columns))}
	for i := range m.Columns {
		c := &m.Columns[i]
		v, err := doc.LookupErr(c.path...)
		present := err == nil && v.Type != bsontype.Null && v.Type != bsontype.Undefined
		if !present {
			if c.Default != nil {
				row.Values[i] = c.defaultValue
				continue
			}
			if c.Required {
				return nil, m.reject(c, v, "required field is missing or null")
			}
			row.Values[i] = nil
			continue
		}
		if c.Type == TypeRef {
			id, err := objectIDString(v)
			if err != nil {
				return nil, m.reject(c, v, err.Error())
			}
			row.Refs = append(row.Refs, Ref{Col: i, Column: c.Column, Field: c.Field, Collection: c.Ref.Collection, LegacyID: id, Missing: c.Ref.Missing})
			continue
		}
		val, err := c.convert(v)
		if err != nil {
			return nil, m.reject(c, v, err.Error())
		}
		row.Values[i] = val
	}
	return row, nil
}

func (m *Mapping) reject(c *ColumnSpec, v bson.RawValue, reason string) *Rejection {
	return &Rejection{Collection: m.Collection, Field: c.Field, Column: c.Column, Value: valueText(v), Reason: reason}
}

// valueText renders a value for a rejection message, truncated.
func valueText(v bson.RawValue) string {
	if v.Type == 0 {
		return "<missing>"
	}
	s := v.String()
	if len(s) > 200 {
		s = s[:200] + "...(truncated)"
	}
	return s
}

type reason string

func (r reason) Error() string { return string(r) }

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
		n, err := exactInt(v)
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
		if err := c.checkSign(n > 0, n == 0); err != nil {
			return nil, err
		}
		return n, nil
	case TypeNumeric:
		d, text, err := ToDecimal(v, c.decimal)
		if err != nil {
			return nil, err
		}
		if err := c.checkSign(d.Sign() > 0, d.Sign() == 0); err != nil {
			return nil, err
		}
		return text, nil
	case TypeFloat8:
		switch v.Type {
		case bsontype.Double:
			f := v.Double()
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, reason("NaN and Infinity are refused")
			}
			return f, nil
		case bsontype.Int32:
			return float64(v.Int32()), nil
		}
		return nil, reason(fmt.Sprintf("expected a double, got %s", typeName(v.Type)))
	case TypeTimestamptz:
		switch v.Type {
		case bsontype.DateTime:
			return time.UnixMilli(v.DateTime()).UTC(), nil
		case bsontype.Timestamp:
			t, _ := v.Timestamp()
			return time.Unix(int64(t), 0).UTC(), nil
		case bsontype.String:
			ts, err := time.Parse(time.RFC3339Nano, v.StringValue())
			if err != nil {
				return nil, reason("string is not an RFC 3339 time")
			}
			return ts.UTC(), nil
		}
		return nil, reason(fmt.Sprintf("expected a date, got %s", typeName(v.Type)))
	case TypeJSONB:
		b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
		if err != nil {
			return nil, reason(fmt.Sprintf("cannot encode as JSON: %v", err))
		}
		js := string(b[5 : len(b)-1])
		if strings.Contains(js, `\u0000`) {
			return nil, reason("JSON holds a NUL character, which jsonb refuses")
		}
		return js, nil
	case TypeTextArray:
		arr, ok := v.ArrayOK()
		if !ok {
			return nil, reason(fmt.Sprintf("expected an array, got %s", typeName(v.Type)))
		}
		vals, err := arr.Values()
		if err != nil {
			return nil, reason(fmt.Sprintf("invalid array: %v", err))
		}
		out := make([]string, 0, len(vals))
		for i, e := range vals {
			s, ok := e.StringValueOK()
			if !ok {
				return nil, reason(fmt.Sprintf("element %d: expected a string, got %s", i, typeName(e.Type)))
			}
			s, err := cleanText(s)
			if err != nil {
				return nil, reason(fmt.Sprintf("element %d: %v", i, err))
			}
			out = append(out, s)
		}
		return out, nil
	case TypeEnum:
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
	return nil, reason(fmt.Sprintf("unsupported column type %s", c.Type))
}

func (c *ColumnSpec) checkSign(positive, zero bool) error {
	switch c.Check {
	case CheckPositive:
		if !positive {
			return reason("must be greater than 0")
		}
	case CheckNonNegative:
		if !positive && !zero {
			return reason("must not be negative")
		}
	}
	return nil
}

// exactInt accepts int32, int64, and doubles or Decimal128 with an exact
// integral value.
func exactInt(v bson.RawValue) (int64, error) {
	switch v.Type {
	case bsontype.Int32:
		return int64(v.Int32()), nil
	case bsontype.Int64:
		return v.Int64(), nil
	case bsontype.Double:
		f := v.Double()
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) || math.Abs(f) > 1<<53 {
			return 0, reason(fmt.Sprintf("%s is not an exact integer", strconv.FormatFloat(f, 'g', -1, 64)))
		}
		return int64(f), nil
	case bsontype.Decimal128:
		d, _, err := ToDecimal(v, DecimalSpec{})
		if err != nil {
			return 0, err
		}
		if !d.IsInteger() || !d.BigInt().IsInt64() {
			return 0, reason(fmt.Sprintf("%s is not an exact int64", d.String()))
		}
		return d.IntPart(), nil
	}
	return 0, reason(fmt.Sprintf("expected an integer, got %s", typeName(v.Type)))
}

func objectIDString(v bson.RawValue) (string, error) {
	switch v.Type {
	case bsontype.ObjectID:
		return v.ObjectID().Hex(), nil
	case bsontype.String:
		s := v.StringValue()
		if len(s) == 24 && isHex(s) {
			return strings.ToLower(s), nil
		}
		return "", reason(fmt.Sprintf("string %q is not an ObjectId", s))
	}
	return "", reason(fmt.Sprintf("expected an ObjectId, got %s", typeName(v.Type)))
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
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
