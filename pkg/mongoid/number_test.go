package mongoid_test

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/amanat/cdc/pkg/mongoid"
)

func i32(n int32) bson.RawValue {
	return bson.RawValue{Type: bson.TypeInt32, Value: bsoncore.AppendInt32(nil, n)}
}

func i64(n int64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeInt64, Value: bsoncore.AppendInt64(nil, n)}
}

func f64(f float64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeDouble, Value: bsoncore.AppendDouble(nil, f)}
}

func d128(t *testing.T, s string) bson.RawValue {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		t.Fatalf("ParseDecimal128(%q): %v", s, err)
	}
	h, l := d.GetBytes()
	return bson.RawValue{Type: bson.TypeDecimal128, Value: bsoncore.AppendDecimal128(nil, h, l)}
}

func key(t *testing.T, v bson.RawValue) string {
	t.Helper()
	k, ok := mongoid.NumberKey(v)
	if !ok {
		t.Fatalf("NumberKey(%v): not a number", v)
	}
	return k
}

// TestNumberKeyEqualValuesShareAKey: each group is one value as MongoDB
// compares numbers (one _id); its members give the key named, and no two
// groups share a key.
func TestNumberKeyEqualValuesShareAKey(t *testing.T) {
	negZero := math.Copysign(0, -1)
	groups := []struct {
		key  string
		vals []bson.RawValue
	}{
		{`{"$numberLong":"7"}`, []bson.RawValue{i32(7), i64(7), f64(7), d128(t, "7"), d128(t, "7.00"), d128(t, "70E-1"), d128(t, "0.7E+1")}},
		{`{"$numberLong":"0"}`, []bson.RawValue{i32(0), i64(0), f64(0), f64(negZero), d128(t, "0"), d128(t, "-0"), d128(t, "0E-30"), d128(t, "0E+300")}},
		{`{"$numberLong":"-42"}`, []bson.RawValue{i32(-42), i64(-42), f64(-42), d128(t, "-42.0")}},
		{`{"$numberDecimal":"7.5"}`, []bson.RawValue{f64(7.5), d128(t, "7.5"), d128(t, "7.50"), d128(t, "75E-1")}},
		{`{"$numberDecimal":"-0.125"}`, []bson.RawValue{f64(-0.125), d128(t, "-0.1250")}},
		{`{"$numberDecimal":"0.1"}`, []bson.RawValue{d128(t, "0.1"), d128(t, "0.100")}},
		{`{"$numberDouble":"0.1000000000000000055511151231257827021181583404541015625"}`, []bson.RawValue{f64(0.1)}},
		{`{"$numberLong":"9223372036854775807"}`, []bson.RawValue{i64(math.MaxInt64), d128(t, "9223372036854775807")}},
		{`{"$numberLong":"-9223372036854775808"}`, []bson.RawValue{i64(math.MinInt64), f64(-(1 << 63)), d128(t, "-9223372036854775808")}},
		// 2^63: integral, outside int64.
		{`{"$numberDecimal":"9223372036854775808"}`, []bson.RawValue{f64(1 << 63), d128(t, "9223372036854775808")}},
		{`{"$numberDecimal":"1E+20"}`, []bson.RawValue{f64(1e20), d128(t, "1E+20"), d128(t, "100000000000000000000")}},
		// 2^53 + 1 is not a double: the double nearest is 2^53.
		{`{"$numberLong":"9007199254740993"}`, []bson.RawValue{i64(1<<53 + 1), d128(t, "9007199254740993")}},
		{`{"$numberLong":"9007199254740992"}`, []bson.RawValue{i64(1 << 53), f64(1 << 53)}},
		{`{"$numberDecimal":"1.5E-7"}`, []bson.RawValue{d128(t, "0.00000015"), d128(t, "15E-8")}},
		{`{"$numberDecimal":"0.0000015"}`, []bson.RawValue{d128(t, "0.0000015")}},
		{`{"$numberDecimal":"1.234567890123456789012345678901234E+6144"}`, []bson.RawValue{d128(t, "1234567890123456789012345678901234E+6111")}},
		{`{"$numberDecimal":"1E-6176"}`, []bson.RawValue{d128(t, "1E-6176")}},
		{`{"$numberDouble":"4.940656458412465441765687928682213723650598026143247644255856825006755072702087518652998363616359923797965646954457177309266567103559397963987747960107818781263007131903114045278458171678489821036887186360569987307230500063874091535649843873124733972731696151400317153853980741262385655911710266585566867681870395603106249319452715914924553293054565444011274801297099995419319894090804165633245247571478690147267801593552386115501348035264934720193790268107107491703332226844753335720832431936092382893458368060106011506169809753078342277318329247904982524730776375927247874656084778203734469699533647017972677717585125660551199131504891101451037862738167250955837389733598993664809941164205702637090279242767544565229087538682506419718265533447265625E-324"}`, []bson.RawValue{f64(5e-324)}},
		{mongoid.NaNKey, []bson.RawValue{f64(math.NaN()), f64(-math.NaN()), d128(t, "NaN"), d128(t, "-NaN")}},
		{mongoid.PosInfKey, []bson.RawValue{f64(math.Inf(1)), d128(t, "Infinity")}},
		{mongoid.NegInfKey, []bson.RawValue{f64(math.Inf(-1)), d128(t, "-Infinity")}},
	}
	owner := map[string]int{}
	for gi, g := range groups {
		for _, v := range g.vals {
			if got := key(t, v); got != g.key {
				t.Fatalf("group %d: NumberKey(%s %v) = %s, want %s", gi, v.Type, v, got, g.key)
			}
		}
		if prev, dup := owner[g.key]; dup {
			t.Fatalf("groups %d and %d share the key %s", prev, gi, g.key)
		}
		owner[g.key] = gi
	}
}

// TestNumberKeyNonCanonicalDecimalIsZero: a coefficient of 10^34 or more
// is zero (IEEE 754-2008 3.5.2), not the number the driver's BigInt reads.
func TestNumberKeyNonCanonicalDecimalIsZero(t *testing.T) {
	c := new(big.Int).Exp(big.NewInt(10), big.NewInt(34), nil) // 10^34: one past the largest canonical coefficient
	hi := new(big.Int).Rsh(c, 64).Uint64()
	lo := new(big.Int).And(c, new(big.Int).SetUint64(math.MaxUint64)).Uint64()
	nc := bson.RawValue{Type: bson.TypeDecimal128, Value: bsoncore.AppendDecimal128(nil, 0x3040000000000000|hi, lo)}
	if got := key(t, nc); got != `{"$numberLong":"0"}` {
		t.Fatalf("non-canonical decimal (coefficient 10^34): key %s, want zero's", got)
	}
}

func TestNumberKeyOtherTypes(t *testing.T) {
	for _, v := range []bson.RawValue{
		{Type: bson.TypeString, Value: bsoncore.AppendString(nil, "7")},
		{Type: bson.TypeBoolean, Value: bsoncore.AppendBoolean(nil, true)},
		{Type: bson.TypeNull},
		{Type: bson.TypeDateTime, Value: bsoncore.AppendDateTime(nil, 7)},
	} {
		if k, ok := mongoid.NumberKey(v); ok {
			t.Fatalf("NumberKey(%s) = %s, want not a number", v.Type, k)
		}
	}
}

// TestNumberKeyRandom: over random doubles and decimals, two numbers share
// a key exactly when their values are equal (compared as exact
// rationals); a double's key reads back as that double; a decimal form is
// what the driver prints for that decimal.
func TestNumberKeyRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 2))
	type num struct {
		v   bson.RawValue
		rat *big.Rat // nil: not finite
	}
	var nums []num
	addDouble := func(f float64) {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return
		}
		nums = append(nums, num{f64(f), new(big.Rat).SetFloat64(f)})
	}
	addDecimal := func(s string) {
		v := d128(t, s)
		c, q, err := v.Decimal128().BigInt()
		if err != nil {
			t.Fatal(err)
		}
		r := new(big.Rat).SetInt(c)
		p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(q))), nil))
		if q >= 0 {
			r.Mul(r, p)
		} else {
			r.Quo(r, p)
		}
		nums = append(nums, num{v, r})
	}
	for range 3000 {
		var f float64
		switch rng.IntN(4) {
		case 0: // any bit pattern
			f = math.Float64frombits(rng.Uint64())
		case 1: // short decimals
			f = float64(rng.Int64N(2_000_001)-1_000_000) / math.Pow(10, float64(rng.IntN(8)))
		case 2: // binary fractions and integers, exactly representable as short decimals
			f = float64(rng.Int64N(1<<20)) / float64(int64(1)<<rng.IntN(12))
		default: // large integers around 2^53 and 2^63
			f = math.Ldexp(1, 50+rng.IntN(16)) + float64(rng.IntN(5))
		}
		addDouble(f)
		// The same value as a decimal, when a decimal can hold it.
		if s := strconv.FormatFloat(f, 'e', -1, 64); rng.IntN(2) == 0 {
			if d, err := bson.ParseDecimal128(s); err == nil {
				if _, _, err := d.BigInt(); err == nil {
					addDecimal(s)
				}
			}
		}
		// A decimal of random digits and exponent, and one of its cohort.
		digits := strconv.FormatUint(rng.Uint64N(1e17), 10) + strconv.FormatUint(rng.Uint64N(1e17), 10)
		digits = digits[:1+rng.IntN(len(digits))]
		exp := rng.IntN(80) - 40
		addDecimal(digits + "E" + strconv.Itoa(exp))
		addDecimal(digits + "000E" + strconv.Itoa(exp-3))
		addDouble(float64(rng.Int32()))
		nums = append(nums, num{i32(rng.Int32()), nil}, num{i64(rng.Int64() >> rng.IntN(64)), nil})
	}
	for i := range nums {
		if nums[i].rat == nil { // integers
			r := new(big.Rat)
			switch nums[i].v.Type {
			case bson.TypeInt32:
				r.SetInt64(int64(nums[i].v.Int32()))
			default:
				r.SetInt64(nums[i].v.Int64())
			}
			nums[i].rat = r
		}
	}
	byKey := map[string]*big.Rat{}
	for _, n := range nums {
		k := key(t, n.v)
		if prev, ok := byKey[k]; ok && prev.Cmp(n.rat) != 0 {
			t.Fatalf("key %s: values %s and %s differ", k, prev.RatString(), n.rat.RatString())
		}
		byKey[k] = n.rat
		payload := k[strings.Index(k, `":"`)+3 : len(k)-2]
		switch {
		case strings.HasPrefix(k, `{"$numberDecimal":`):
			d, err := bson.ParseDecimal128(payload)
			if err != nil || d.String() != payload {
				t.Fatalf("key %s: the driver reads %q back as %v (%v)", k, payload, d, err)
			}
		case strings.HasPrefix(k, `{"$numberDouble":`):
			f, err := strconv.ParseFloat(payload, 64)
			if err != nil || n.v.Type != bson.TypeDouble || f != n.v.Double() {
				t.Fatalf("key %s of %s %v: reads back as %v (%v)", k, n.v.Type, n.v, f, err)
			}
		case strings.HasPrefix(k, `{"$numberLong":`):
			if !n.rat.IsInt() {
				t.Fatalf("key %s for the non-integer %s", k, n.rat.RatString())
			}
		default:
			t.Fatalf("key %s: unknown form", k)
		}
	}
	// Equal values share a key: group by value.
	byValue := map[string]string{}
	for _, n := range nums {
		k, r := key(t, n.v), n.rat.RatString()
		if prev, ok := byValue[r]; ok && prev != k {
			t.Fatalf("value %s has the keys %s and %s", r, prev, k)
		}
		byValue[r] = k
	}
	if len(byValue) < len(nums)/3 {
		t.Fatalf("only %d distinct values among %d numbers: the corpus is too narrow", len(byValue), len(nums))
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
