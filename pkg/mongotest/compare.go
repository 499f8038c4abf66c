package mongotest

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/big"
	"strconv"

	"github.com/shopspring/decimal"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// canonicalType maps a BSON type to MongoDB's sort bracket, following
// MongoDB's canonicalizeBSONType: MinKey < (undefined) < null < numbers <
// strings/symbols < objects < arrays < binData < ObjectId < bool < date <
// timestamp < regex < dbPointer < code < codeWithScope < MaxKey.
func canonicalType(t bsoncore.Type) int {
	switch t {
	case bsoncore.TypeMinKey:
		return -1
	case bsoncore.TypeUndefined:
		return 0
	case bsoncore.TypeNull:
		return 5
	case bsoncore.TypeDouble, bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDecimal128:
		return 10
	case bsoncore.TypeString, bsoncore.TypeSymbol:
		return 15
	case bsoncore.TypeEmbeddedDocument:
		return 20
	case bsoncore.TypeArray:
		return 25
	case bsoncore.TypeBinary:
		return 30
	case bsoncore.TypeObjectID:
		return 35
	case bsoncore.TypeBoolean:
		return 40
	case bsoncore.TypeDateTime:
		return 45
	case bsoncore.TypeTimestamp:
		return 47
	case bsoncore.TypeRegex:
		return 50
	case bsoncore.TypeDBPointer:
		return 55
	case bsoncore.TypeJavaScript:
		return 60
	case bsoncore.TypeCodeWithScope:
		return 65
	case bsoncore.TypeMaxKey:
		return 127
	}
	return 100
}

func isNumber(t bsoncore.Type) bool {
	return t == bsoncore.TypeDouble || t == bsoncore.TypeInt32 || t == bsoncore.TypeInt64 || t == bsoncore.TypeDecimal128
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareValues compares two BSON values in MongoDB's order (no collation).
func compareValues(a, b bsoncore.Value) int {
	ca, cb := canonicalType(a.Type), canonicalType(b.Type)
	if ca != cb {
		return cmpInt(int64(ca), int64(cb))
	}
	switch a.Type {
	case bsoncore.TypeMinKey, bsoncore.TypeMaxKey, bsoncore.TypeNull, bsoncore.TypeUndefined:
		return 0
	case bsoncore.TypeDouble, bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDecimal128:
		return compareNumbers(a, b)
	case bsoncore.TypeString, bsoncore.TypeSymbol:
		return bytes.Compare([]byte(stringOf(a)), []byte(stringOf(b)))
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
		return compareDocs(bsoncore.Document(a.Data), bsoncore.Document(b.Data))
	case bsoncore.TypeBinary:
		sa, da := a.Binary()
		sb, db := b.Binary()
		if len(da) != len(db) {
			return cmpInt(int64(len(da)), int64(len(db)))
		}
		if sa != sb {
			return cmpInt(int64(sa), int64(sb))
		}
		return bytes.Compare(da, db)
	case bsoncore.TypeObjectID:
		oa, ob := a.ObjectID(), b.ObjectID()
		return bytes.Compare(oa[:], ob[:])
	case bsoncore.TypeBoolean:
		ba, bb := a.Boolean(), b.Boolean()
		if ba == bb {
			return 0
		}
		if !ba {
			return -1
		}
		return 1
	case bsoncore.TypeDateTime:
		return cmpInt(a.DateTime(), b.DateTime())
	case bsoncore.TypeTimestamp:
		ta, ia := a.Timestamp()
		tb, ib := b.Timestamp()
		return compareTimestamps(bson.Timestamp{T: ta, I: ia}, bson.Timestamp{T: tb, I: ib})
	case bsoncore.TypeRegex:
		pa, oa := a.Regex()
		pb, ob := b.Regex()
		if c := bytes.Compare([]byte(pa), []byte(pb)); c != 0 {
			return c
		}
		return bytes.Compare([]byte(oa), []byte(ob))
	}
	return bytes.Compare(a.Data, b.Data)
}

func compareTimestamps(a, b bson.Timestamp) int {
	if a.T != b.T {
		if a.T < b.T {
			return -1
		}
		return 1
	}
	if a.I != b.I {
		if a.I < b.I {
			return -1
		}
		return 1
	}
	return 0
}

func stringOf(v bsoncore.Value) string {
	if v.Type == bsoncore.TypeSymbol {
		return v.Symbol()
	}
	return v.StringValue()
}

// compareDocs compares two documents (or arrays) element by element: first
// the canonical type, then the field name, then the value; a shorter
// document sorts first.
func compareDocs(a, b bsoncore.Document) int {
	ea, _ := a.Elements()
	eb, _ := b.Elements()
	for i := 0; i < len(ea) && i < len(eb); i++ {
		va, vb := ea[i].Value(), eb[i].Value()
		if ca, cb := canonicalType(va.Type), canonicalType(vb.Type); ca != cb {
			return cmpInt(int64(ca), int64(cb))
		}
		if c := bytes.Compare([]byte(ea[i].Key()), []byte(eb[i].Key())); c != 0 {
			return c
		}
		if c := compareValues(va, vb); c != 0 {
			return c
		}
	}
	return cmpInt(int64(len(ea)), int64(len(eb)))
}

// compareNumbers compares numeric values of any BSON numeric type exactly.
// NaN sorts below every other number.
func compareNumbers(a, b bsoncore.Value) int {
	if a.Type == bsoncore.TypeDecimal128 || b.Type == bsoncore.TypeDecimal128 {
		return compareBig(a, b)
	}
	if a.Type == bsoncore.TypeDouble || b.Type == bsoncore.TypeDouble {
		if a.Type == bsoncore.TypeDouble && b.Type == bsoncore.TypeDouble {
			return compareFloats(a.Double(), b.Double())
		}
		if a.Type == bsoncore.TypeDouble {
			return compareFloatInt(a.Double(), intOf(b))
		}
		return -compareFloatInt(b.Double(), intOf(a))
	}
	return cmpInt(intOf(a), intOf(b))
}

func intOf(v bsoncore.Value) int64 {
	if v.Type == bsoncore.TypeInt32 {
		return int64(v.Int32())
	}
	return v.Int64()
}

func compareFloats(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareFloatInt compares a float64 with an int64 without losing precision.
func compareFloatInt(f float64, i int64) int {
	if math.IsNaN(f) {
		return -1
	}
	if f >= 9223372036854775808.0 {
		return 1
	}
	if f < -9223372036854775808.0 {
		return -1
	}
	fl := math.Floor(f)
	fi := int64(fl)
	if fi != i {
		return cmpInt(fi, i)
	}
	if f > fl {
		return 1
	}
	return 0
}

// numClass tells how a decimal-valued number behaves in comparisons.
type numClass int

const (
	numNaN numClass = iota
	numNegInf
	numFinite
	numPosInf
)

// bigOf converts any numeric value to an exact big.Float (with its class).
func bigOf(v bsoncore.Value) (numClass, *big.Float) {
	switch v.Type {
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return numFinite, new(big.Float).SetInt64(intOf(v))
	case bsoncore.TypeDouble:
		f := v.Double()
		switch {
		case math.IsNaN(f):
			return numNaN, nil
		case math.IsInf(f, 1):
			return numPosInf, nil
		case math.IsInf(f, -1):
			return numNegInf, nil
		}
		return numFinite, new(big.Float).SetFloat64(f)
	case bsoncore.TypeDecimal128:
		d := bson.NewDecimal128(v.Decimal128())
		if d.IsNaN() {
			return numNaN, nil
		}
		if inf := d.IsInf(); inf != 0 {
			if inf > 0 {
				return numPosInf, nil
			}
			return numNegInf, nil
		}
		bi, exp, err := d.BigInt()
		if err != nil {
			return numNaN, nil
		}
		f := new(big.Float).SetPrec(0).SetInt(bi)
		f.SetPrec(4096)
		if exp != 0 {
			p := new(big.Float).SetPrec(4096).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil))
			if exp > 0 {
				f.Mul(f, p)
			} else {
				f.Quo(f, p)
			}
		}
		return numFinite, f
	}
	return numNaN, nil
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

func compareBig(a, b bsoncore.Value) int {
	ka, fa := bigOf(a)
	kb, fb := bigOf(b)
	if ka != kb || ka != numFinite {
		return cmpInt(int64(ka), int64(kb))
	}
	return fa.Cmp(fb)
}

// valuesEqual reports whether two values are equal for matching purposes.
func valuesEqual(a, b bsoncore.Value) bool {
	if canonicalType(a.Type) != canonicalType(b.Type) {
		return false
	}
	return compareValues(a, b) == 0
}

// idKey returns a map key for an _id value such that two values get the same
// key exactly when MongoDB considers them equal (1, 1.0 and NumberLong(1) are
// the same _id).
func idKey(v bsoncore.Value) string {
	switch v.Type {
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return "n" + strconv.FormatInt(intOf(v), 10)
	case bsoncore.TypeDouble:
		f := v.Double()
		if f == math.Trunc(f) && math.Abs(f) < 9.2e18 {
			return "n" + strconv.FormatInt(int64(f), 10)
		}
		if math.IsNaN(f) {
			return "nNaN"
		}
		return "n" + strconv.FormatFloat(f, 'g', -1, 64)
	case bsoncore.TypeDecimal128:
		d := bson.NewDecimal128(v.Decimal128())
		if dd, err := decimal.NewFromString(d.String()); err == nil {
			if dd.IsInteger() && dd.Abs().LessThan(decimal.New(92, 17)) {
				return "n" + strconv.FormatInt(dd.IntPart(), 10)
			}
			if f, exact := dd.Float64(); exact {
				return "n" + strconv.FormatFloat(f, 'g', -1, 64)
			}
			return "d" + dd.String()
		}
		return "d" + d.String()
	case bsoncore.TypeSymbol:
		return string([]byte{byte(bsoncore.TypeString)}) + v.Symbol()
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
		// Nested numbers are normalised too, so {a:1} and {a:1.0} collide.
		var b []byte
		b = append(b, byte(v.Type))
		b = appendNormalizedDoc(b, bsoncore.Document(v.Data))
		return string(b)
	}
	return string([]byte{byte(v.Type)}) + string(v.Data)
}

func appendNormalizedDoc(b []byte, d bsoncore.Document) []byte {
	elems, _ := d.Elements()
	b = binary.LittleEndian.AppendUint32(b, uint32(len(elems)))
	for _, e := range elems {
		b = append(b, e.Key()...)
		b = append(b, 0)
		k := idKey(e.Value())
		b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
	}
	return b
}
