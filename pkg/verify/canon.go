package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"

	"github.com/amanat/cdc/pkg/transform"
)

// cval is a value in its canonical text form, so that equal values of a
// column compare equal as strings whichever side they came from.
type cval struct {
	null bool
	s    string
}

var null = cval{null: true}

func (v cval) String() string {
	if v.null {
		return "NULL"
	}
	return v.s
}

// kind is how a column's values are read from Postgres and compared.
type kind int

const (
	kText    kind = iota // text, enum, objectid: exact string
	kBool                // boolean
	kInt                 // smallint, int, bigint
	kNumeric             // exact decimal
	kFloat               // float8
	kTime                // timestamptz, to the microsecond
	kJSON                // jsonb, semantically
	kArray               // text[], in order
	kRef                 // uuid reference, resolved through id_map
)

func (k kind) String() string {
	names := [...]string{kText: "text", kBool: "bool", kInt: "integer", kNumeric: "numeric", kFloat: "float8",
		kTime: "timestamptz", kJSON: "jsonb", kArray: "text[]", kRef: "reference"}
	if int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

func kindOf(t transform.ColumnType) (kind, error) {
	switch t {
	case transform.TypeText, transform.TypeEnum, transform.TypeObjectID:
		return kText, nil
	case transform.TypeBool:
		return kBool, nil
	case transform.TypeSmallint, transform.TypeInt, transform.TypeBigint:
		return kInt, nil
	case transform.TypeNumeric:
		return kNumeric, nil
	case transform.TypeFloat8:
		return kFloat, nil
	case transform.TypeTimestamptz:
		return kTime, nil
	case transform.TypeJSONB:
		return kJSON, nil
	case transform.TypeTextArray:
		return kArray, nil
	case transform.TypeRef:
		return kRef, nil
	}
	return 0, fmt.Errorf("column type %s is not supported by verify", t)
}

// selectExpr is the SQL that reads column col of alias a in the form
// scan expects.
func (k kind) selectExpr(a, col string) string {
	c := a + "." + quoteIdent(col)
	switch k {
	case kBool, kTime:
		return c
	case kInt:
		return c + "::bigint"
	case kFloat:
		return c + "::float8"
	case kArray:
		return "to_jsonb(" + c + ")::text"
	}
	return c + "::text"
}

// dest returns a new scan destination for the kind.
func (k kind) dest() any {
	switch k {
	case kBool:
		return &pgtype.Bool{}
	case kInt:
		return &pgtype.Int8{}
	case kFloat:
		return &pgtype.Float8{}
	case kTime:
		return &pgtype.Timestamptz{}
	}
	return &pgtype.Text{}
}

// stored turns a scanned destination into its canonical value (a kRef
// stays the uuid text until resolved).
func (k kind) stored(d any) cval {
	switch x := d.(type) {
	case *pgtype.Bool:
		if !x.Valid {
			return null
		}
		return cval{s: strconv.FormatBool(x.Bool)}
	case *pgtype.Int8:
		if !x.Valid {
			return null
		}
		return cval{s: strconv.FormatInt(x.Int64, 10)}
	case *pgtype.Float8:
		if !x.Valid {
			return null
		}
		return cval{s: floatText(x.Float64)}
	case *pgtype.Timestamptz:
		if !x.Valid {
			return null
		}
		switch x.InfinityModifier {
		case pgtype.Infinity:
			return cval{s: "infinity"}
		case pgtype.NegativeInfinity:
			return cval{s: "-infinity"}
		}
		return cval{s: timeText(x.Time)}
	case *pgtype.Text:
		if !x.Valid {
			return null
		}
		switch k {
		case kNumeric:
			return cval{s: pgNumericText(x.String)}
		case kJSON, kArray:
			return cval{s: canonJSON(x.String)}
		}
		return cval{s: x.String}
	}
	return cval{s: fmt.Sprintf("unexpected %T", d)}
}

// expected turns a transformed value (Row.Values) into its canonical value.
func (k kind) expected(v any) cval {
	if v == nil {
		return null
	}
	switch x := v.(type) {
	case string:
		switch k {
		case kNumeric:
			return cval{s: decimalText(x)}
		case kJSON:
			return cval{s: canonJSON(x)}
		}
		return cval{s: x}
	case bool:
		return cval{s: strconv.FormatBool(x)}
	case int64:
		return cval{s: strconv.FormatInt(x, 10)}
	case int32:
		return cval{s: strconv.FormatInt(int64(x), 10)}
	case int:
		return cval{s: strconv.Itoa(x)}
	case float64:
		return cval{s: floatText(x)}
	case time.Time:
		return cval{s: timeText(x)}
	case []string:
		b, _ := json.Marshal(x)
		return cval{s: canonJSON(string(b))}
	}
	return cval{s: fmt.Sprintf("%v", v)}
}

// decimalText is the canonical form of a decimal: shortest plain notation
// (no trailing fractional zeros, no exponent), read by decode.go's
// decimalString, not by the sink's decimal library. Text that is not a
// decimal is kept, marked.
func decimalText(s string) string {
	if d, ok := decimalString(s); ok {
		return d
	}
	return "<not a decimal: " + s + ">"
}

// parseDecimal reads a canonical or Postgres decimal.
func parseDecimal(s string) (decimal.Decimal, bool) {
	d, err := decimal.NewFromString(s)
	return d, err == nil
}

func floatText(f float64) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// canonTime is the canonical form of a timestamp: UTC, to the
// microsecond.
const canonTime = "2006-01-02T15:04:05.000000Z"

// timeText is a timestamp in UTC to the microsecond, the precision
// Postgres keeps (the sink writes microseconds, truncated). A BSON date
// is milliseconds, so its text ends in 000: a Postgres value that differs
// below the millisecond differs here too.
func timeText(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(canonTime)
}

// canonJSON renders JSON text canonically: object keys sorted, numbers as
// exact decimals (1.10 and 1.1 are equal), no insignificant whitespace.
// Text that is not JSON is kept, marked, so it compares unequal.
func canonJSON(s string) string {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "not-json:" + s
	}
	var b bytes.Buffer
	writeCanon(&b, v)
	return b.String()
}

func writeCanon(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		if d, err := decimal.NewFromString(string(x)); err == nil {
			b.WriteString(d.String())
		} else {
			b.WriteString(string(x))
		}
	case string:
		q, _ := json.Marshal(x)
		b.Write(q)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanon(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			q, _ := json.Marshal(k)
			b.Write(q)
			b.WriteByte(':')
			writeCanon(b, x[k])
		}
		b.WriteByte('}')
	default:
		fmt.Fprintf(b, "%v", x)
	}
}

// quoteIdent quotes one SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteTable quotes a possibly schema-qualified table name.
func quoteTable(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, ".")
}

// clip shortens a value for an example.
func clip(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	return s[:max] + fmt.Sprintf("...(%d bytes)", len(s))
}
