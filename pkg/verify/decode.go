package verify

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Verify's own reading of money, identifiers and times from BSON. The
// sink converts values with pkg/transform (the driver's Decimal128.BigInt,
// shopspring/decimal); if verify compared through the same code, a
// converter bug would be reproduced on both sides and pass green. So the
// values that matter most are decoded here from the raw bytes, with
// nothing shared but the standard library, and compared with the text
// Postgres prints (numeric::text), which is the third, independent party.

// decoded is the exact text of a value as verify reads it, or why it is
// not a value a column can hold (bad != "": the text is then a marker that
// equals nothing Postgres can print).
type decoded struct {
	text string
	bad  string
}

func badValue(format string, args ...any) decoded {
	why := fmt.Sprintf(format, args...)
	return decoded{text: "<" + why + ">", bad: why}
}

// decimal128Bias is the exponent bias of IEEE 754-2008 decimal128.
const decimal128Bias = 6176

// maxCoefficient is 10^34 - 1, the largest canonical decimal128
// coefficient (34 digits).
var maxCoefficient = new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(34), nil), big.NewInt(1))

// decimal128 decodes the 16 bytes of a BSON Decimal128 (little endian,
// IEEE 754-2008 decimal128 in the binary integer decimal encoding):
//
//	bit 127         sign
//	bits 126..122   11111 NaN, 11110 Infinity
//	bits 126..125   11: exponent in bits 124..111, coefficient 100 followed
//	                by bits 110..0 (always >= 2^113 > 10^34 - 1)
//	otherwise       exponent in bits 126..113, coefficient in bits 112..0
//
// value = (-1)^sign × coefficient × 10^(exponent - 6176). A coefficient
// over 10^34 - 1 is non-canonical and, per IEEE 754-2008 (3.5.2) and the
// MongoDB server, the value is zero (with that exponent). NaN and
// Infinity are returned as bad: no column holds them.
func decimal128(b []byte) decoded {
	if len(b) != 16 {
		return badValue("Decimal128 of %d bytes", len(b))
	}
	lo, hi := binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
	neg := hi>>63 == 1
	switch (hi >> 58) & 0x1f {
	case 0x1f:
		return badValue("NaN is not an amount")
	case 0x1e:
		if neg {
			return badValue("-Infinity is not an amount")
		}
		return badValue("Infinity is not an amount")
	}
	var exp int
	coef := new(big.Int)
	if (hi>>61)&3 == 3 {
		exp = int((hi>>47)&0x3fff) - decimal128Bias // non-canonical: coefficient 0
	} else {
		exp = int((hi>>49)&0x3fff) - decimal128Bias
		coef.SetUint64(hi & (1<<49 - 1))
		coef.Lsh(coef, 64)
		coef.Or(coef, new(big.Int).SetUint64(lo))
		if coef.Cmp(maxCoefficient) > 0 {
			coef.SetInt64(0)
		}
	}
	return decoded{text: plainText(neg, coef.String(), exp)}
}

// plainText renders ±digits × 10^exp in plain notation, without an
// exponent and without trailing fractional zeros ("0" for zero, which has
// no sign: Postgres' numeric has no negative zero).
func plainText(neg bool, digits string, exp int) string {
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0"
	}
	var s string
	switch {
	case exp >= 0:
		s = digits + strings.Repeat("0", exp)
	case -exp >= len(digits):
		s = "0." + strings.Repeat("0", -exp-len(digits)) + digits
	default:
		s = digits[:len(digits)+exp] + "." + digits[len(digits)+exp:]
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// decimalString reads decimal text ([+-]digits[.digits][e[+-]digits], the
// forms a numeric string or strconv's rendering of a double take) into
// plain text. ok is false for anything else.
func decimalString(s string) (string, bool) {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	mant, expText, hasExp := strings.Cut(strings.ToLower(s), "e")
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expText)
		if err != nil || expText == "" || strings.HasPrefix(expText, "+-") || math.Abs(float64(e)) > 100_000 {
			return "", false
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if intPart == "" && frac == "" {
		return "", false
	}
	for _, p := range []string{intPart, frac} {
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return "", false
			}
		}
	}
	return plainText(neg, intPart+frac, exp-len(frac)), true
}

// number decodes a value for a numeric column: Decimal128 from its bits,
// int32 and int64 as they are, a double through its shortest round-trip
// decimal form (strconv), a numeric string as written. Anything else is
// bad.
func number(v bson.RawValue) decoded {
	switch v.Type {
	case bson.TypeDecimal128:
		return decimal128(v.Value)
	case bson.TypeInt32:
		if len(v.Value) != 4 {
			return badValue("int32 of %d bytes", len(v.Value))
		}
		return decoded{text: strconv.FormatInt(int64(int32(binary.LittleEndian.Uint32(v.Value))), 10)}
	case bson.TypeInt64:
		if len(v.Value) != 8 {
			return badValue("int64 of %d bytes", len(v.Value))
		}
		return decoded{text: strconv.FormatInt(int64(binary.LittleEndian.Uint64(v.Value)), 10)}
	case bson.TypeDouble:
		if len(v.Value) != 8 {
			return badValue("double of %d bytes", len(v.Value))
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(v.Value))
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return badValue("%v is not an amount", f)
		}
		s, _ := decimalString(strconv.FormatFloat(f, 'e', -1, 64))
		return decoded{text: s}
	case bson.TypeString:
		str, ok := v.StringValueOK()
		if !ok {
			return badValue("malformed string")
		}
		if s, ok := decimalString(str); ok {
			return decoded{text: s}
		}
		return badValue("string %q is not a decimal number", clip(str))
	}
	return badValue("a %s is not a number", v.Type)
}

// objectID decodes an identifier: an ObjectId's 12 bytes as lower-case
// hex, or a string of 24 hex digits (lower-cased, as the legacy id_map
// keys are).
func objectID(v bson.RawValue) decoded {
	switch v.Type {
	case bson.TypeObjectID:
		if len(v.Value) != 12 {
			return badValue("ObjectId of %d bytes", len(v.Value))
		}
		return decoded{text: hex.EncodeToString(v.Value)}
	case bson.TypeString:
		s, ok := v.StringValueOK()
		if ok && len(s) == 24 {
			if _, err := hex.DecodeString(s); err == nil {
				return decoded{text: strings.ToLower(s)}
			}
		}
		return badValue("string %q is not an ObjectId", clip(s))
	}
	return badValue("a %s is not an ObjectId", v.Type)
}

// timestamp decodes a time to what a timestamptz column must hold, in UTC:
// a BSON date is milliseconds since the epoch (so the column holds exactly
// that millisecond, with no microseconds and no zone shift); a BSON
// timestamp its seconds; a string an RFC 3339 time.
func timestamp(v bson.RawValue) decoded {
	switch v.Type {
	case bson.TypeDateTime:
		if len(v.Value) != 8 {
			return badValue("date of %d bytes", len(v.Value))
		}
		return decoded{text: timeText(time.UnixMilli(int64(binary.LittleEndian.Uint64(v.Value))))}
	case bson.TypeTimestamp:
		if len(v.Value) != 8 {
			return badValue("timestamp of %d bytes", len(v.Value))
		}
		// Increment in the low four bytes, seconds in the high four.
		return decoded{text: timeText(time.Unix(int64(binary.LittleEndian.Uint32(v.Value[4:])), 0))}
	case bson.TypeString:
		s, _ := v.StringValueOK()
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return badValue("string %q is not an RFC 3339 time", clip(s))
		}
		return decoded{text: timeText(t)}
	}
	return badValue("a %s is not a time", v.Type)
}

// pgNumericText normalises Postgres' numeric::text for comparison with
// plainText: numeric::text is plain notation padded with zeros to the
// column's scale (1099.990000000000000000 in numeric(38,18)), so only the
// trailing fractional zeros go. NaN and ±Infinity stay, marked: they
// equal no amount.
func pgNumericText(s string) string {
	if s == "NaN" || s == "Infinity" || s == "-Infinity" {
		return "<Postgres " + s + ">"
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" || s == "" {
		s = "0"
	}
	return s
}
