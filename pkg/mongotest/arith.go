package mongotest

import (
	"fmt"
	"math"

	"github.com/shopspring/decimal"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// ---- arithmetic ($inc, $mul, $sum, $avg) ----

// arith computes a+b or a*b with MongoDB's type promotion: int32 op int32
// stays int32 unless it overflows (then int64), int64 overflow is an error,
// any double makes a double and any Decimal128 makes a Decimal128 (computed
// exactly with shopspring/decimal).
func arith(a, b bsoncore.Value, op byte) (any, error) {
	if a.Type == bsoncore.TypeDecimal128 || b.Type == bsoncore.TypeDecimal128 {
		da, err := decimalOf(a)
		if err != nil {
			return nil, err
		}
		db, err := decimalOf(b)
		if err != nil {
			return nil, err
		}
		var r decimal.Decimal
		if op == '+' {
			r = da.Add(db)
		} else {
			r = da.Mul(db)
		}
		return toDecimal128(r)
	}
	if a.Type == bsoncore.TypeDouble || b.Type == bsoncore.TypeDouble {
		fa, fb := floatOf(a), floatOf(b)
		if op == '+' {
			return fa + fb, nil
		}
		return fa * fb, nil
	}
	ia, ib := intOf(a), intOf(b)
	var r int64
	overflow := false
	if op == '+' {
		r = ia + ib
		overflow = (ia > 0 && ib > 0 && r < 0) || (ia < 0 && ib < 0 && r >= 0)
	} else {
		r = ia * ib
		overflow = ia != 0 && (r/ia != ib || (ia == -1 && ib == math.MinInt64) || (ib == -1 && ia == math.MinInt64))
	}
	if overflow {
		return nil, badValue("Failed to apply %c: integer overflow (%d %c %d)", op, ia, op, ib)
	}
	if a.Type == bsoncore.TypeInt32 && b.Type == bsoncore.TypeInt32 && r >= math.MinInt32 && r <= math.MaxInt32 {
		return int32(r), nil
	}
	return r, nil
}

func floatOf(v bsoncore.Value) float64 {
	switch v.Type {
	case bsoncore.TypeDouble:
		return v.Double()
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return float64(intOf(v))
	}
	return math.NaN()
}

func decimalOf(v bsoncore.Value) (decimal.Decimal, error) {
	switch v.Type {
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return decimal.NewFromInt(intOf(v)), nil
	case bsoncore.TypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return decimal.Decimal{}, badValue("mongotest: cannot do decimal arithmetic with %v", f)
		}
		return decimal.NewFromFloat(f), nil
	case bsoncore.TypeDecimal128:
		d := bson.NewDecimal128(v.Decimal128())
		if d.IsNaN() || d.IsInf() != 0 {
			return decimal.Decimal{}, badValue("mongotest: cannot do decimal arithmetic with %s", d)
		}
		r, err := decimal.NewFromString(d.String())
		if err != nil {
			return decimal.Decimal{}, badValue("mongotest: cannot parse decimal %s: %v", d, err)
		}
		return r, nil
	}
	return decimal.Decimal{}, badValue("not a number")
}

// toDecimal128 converts d to Decimal128, rounding to 34 significant digits
// if needed.
func toDecimal128(d decimal.Decimal) (bson.Decimal128, error) {
	// Format as coefficient and exponent so the scale is kept the way
	// IEEE 754-2008 decimal arithmetic keeps it (0.10 + 0.20 = 0.30).
	if r, err := bson.ParseDecimal128(fmt.Sprintf("%sE%d", d.Coefficient().String(), d.Exponent())); err == nil {
		return r, nil
	}
	digits := len(d.Coefficient().String())
	if digits > 34 {
		d = d.Round(int32(34 - (digits + int(d.Exponent())) + 0))
	}
	r, err := bson.ParseDecimal128(d.String())
	if err != nil {
		return bson.Decimal128{}, badValue("decimal result %s out of range: %v", d, err)
	}
	return r, nil
}
