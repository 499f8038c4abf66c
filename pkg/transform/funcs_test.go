package transform_test

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/amanat/cdc/pkg/transform"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// mapFS is an in-memory directory of mapping files.
type mapFS map[string]string

func (m mapFS) Open(name string) (fs.File, error) {
	f := fstest.MapFS{}
	for k, v := range m {
		f[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return f.Open(name)
}

func init() {
	transform.RegisterFunc("test_sum_ab", func(d bson.Raw) (any, error) {
		a, ok1 := d.Lookup("a").AsInt64OK()
		b, ok2 := d.Lookup("b").AsInt64OK()
		if !ok1 || !ok2 {
			return nil, nil
		}
		return a + b, nil
	})
	transform.RegisterFunc("test_fails", func(bson.Raw) (any, error) { return nil, errors.New("no good") })
	transform.RegisterFunc("test_panics", func(bson.Raw) (any, error) { panic("boom") })
	transform.RegisterFunc("test_decimal_text", func(bson.Raw) (any, error) { return "1.5", nil })
	transform.RegisterFunc("test_unencodable", func(bson.Raw) (any, error) { return make(chan int), nil })
}

func TestRegisterFuncRefusesBadRegistrations(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   transform.Func
	}{
		{"Bad Name", func(bson.Raw) (any, error) { return nil, nil }},
		{"created_at", func(bson.Raw) (any, error) { return nil, nil }}, // taken
		{"nil_func", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			transform.RegisterFunc(tc.name, tc.fn)
		})
	}
	names := strings.Join(transform.FuncNames(), ",")
	for _, want := range []string{"created_at", "updated_at", "trezor_next_address_index"} {
		if !strings.Contains(names, want) {
			t.Errorf("built-in %s not registered: %s", want, names)
		}
	}
}

func TestFuncColumns(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [
		{column: sum, func: test_sum_ab, type: smallint, check: positive},
		{column: req, field: a+b, func: test_sum_ab, type: int, required: true},
		{column: amount, func: test_decimal_text, type: "numeric(10,1)"}]}`)
	row, err := m.Row(doc(t, bson.D{{Key: "a", Value: int32(2)}, {Key: "b", Value: int64(3)}}))
	if err != nil {
		t.Fatal(err)
	}
	if row.Values[0] != int64(5) || row.Values[1] != int64(5) || row.Values[2] != "1.5" {
		t.Fatalf("%#v", row.Values)
	}
	// The result is converted by the column type: checks and ranges apply.
	rej := rejection(t, second(m.Row(doc(t, bson.D{{Key: "a", Value: int32(-2)}, {Key: "b", Value: int64(1)}}))))
	if rej.Field != "func:test_sum_ab" || rej.Column != "sum" || rej.Reason != "must be greater than 0" {
		t.Fatalf("%+v", rej)
	}
	rej = rejection(t, second(m.Row(doc(t, bson.D{{Key: "a", Value: int32(40000)}, {Key: "b", Value: int64(1)}}))))
	if !strings.Contains(rej.Reason, "does not fit smallint") {
		t.Fatalf("%+v", rej)
	}
	// nil is "absent": required rejects naming the column's field.
	rej = rejection(t, second(m.Row(doc(t, bson.D{{Key: "a", Value: int32(1)}}))))
	if rej.Field != "a+b" || rej.Reason != "required field is missing or null" {
		t.Fatalf("%+v", rej)
	}
	for name, want := range map[string]string{"test_fails": "func test_fails: no good", "test_panics": "func test_panics: panicked: boom", "test_unencodable": "cannot be encoded as BSON"} {
		m := mustParse(t, fmt.Sprintf(`{version: 1, collection: c, table: t, columns: [{column: x, func: %s, type: text}]}`, name))
		rej := rejection(t, second(m.Row(doc(t, bson.D{}))))
		if !strings.Contains(rej.Reason, want) {
			t.Errorf("%s: %+v", name, rej)
		}
	}
}

func TestBuiltinTimeFuncs(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [
		{column: created_at, field: createdAt, func: created_at, type: timestamptz, required: true},
		{column: updated_at, field: updatedAt, func: updated_at, type: timestamptz, required: true}]}`)
	oid := bson.NewObjectIDFromTimestamp(time.Date(2024, 3, 12, 7, 0, 0, 0, time.UTC))
	c := time.Date(2024, 3, 13, 1, 2, 3, 4e6, time.UTC)
	u := c.Add(time.Hour)
	for _, tc := range []struct {
		name         string
		d            bson.D
		created, upd time.Time
	}{
		{"both", bson.D{{Key: "_id", Value: oid}, {Key: "createdAt", Value: c}, {Key: "updatedAt", Value: u}}, c, u},
		{"no updatedAt", bson.D{{Key: "_id", Value: oid}, {Key: "createdAt", Value: c}}, c, c},
		{"neither: the ObjectId's time", bson.D{{Key: "_id", Value: oid}, {Key: "updatedAt", Value: nil}}, oid.Timestamp().UTC(), oid.Timestamp().UTC()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row, err := m.Row(doc(t, tc.d))
			if err != nil {
				t.Fatal(err)
			}
			if !row.Values[0].(time.Time).Equal(tc.created) || !row.Values[1].(time.Time).Equal(tc.upd) {
				t.Fatalf("got %v, want %v %v", row.Values, tc.created, tc.upd)
			}
		})
	}
	rej := rejection(t, second(m.Row(doc(t, bson.D{{Key: "_id", Value: "legacy-string-id"}}))))
	if rej.Field != "createdAt" || !strings.Contains(rej.Reason, "not an ObjectId whose time could stand in") {
		t.Fatalf("%+v", rej)
	}
	rej = rejection(t, second(m.Row(doc(t, bson.D{{Key: "_id", Value: oid}, {Key: "createdAt", Value: "yesterday"}}))))
	if rej.Field != "createdAt" || !strings.Contains(rej.Reason, "RFC 3339") {
		t.Fatalf("%+v", rej)
	}
}

func TestTrezorNextAddressIndex(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [{column: n, field: addresses, func: trezor_next_address_index, type: int, required: true}]}`)
	addr := func(idx any) bson.D { return bson.D{{Key: "address", Value: "0x"}, {Key: "index", Value: idx}} }
	for _, tc := range []struct {
		name string
		in   any
		want int64
		err  string
	}{
		{"missing", nil, 0, ""},
		{"empty", bson.A{}, 0, ""},
		{"dense", bson.A{addr(int32(0)), addr(int32(1)), addr(int32(2))}, 3, ""},
		{"gap", bson.A{addr(int32(0)), addr(int64(9))}, 10, ""},
		{"no index counts", bson.A{bson.D{{Key: "address", Value: "0x"}}, bson.D{}}, 2, ""},
		{"double index", bson.A{addr(4.0)}, 5, ""},
		{"fractional index", bson.A{addr(4.5)}, 0, "addresses.0.index: 4.5 is not an exact integer"},
		{"negative index", bson.A{addr(int32(-1))}, 0, "is not a derivation index"},
		{"not an array", "x", 0, "addresses is a string, not an array"},
		{"element not a document", bson.A{"0xabc"}, 0, "addresses.0 is a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := bson.D{}
			if tc.in != nil {
				d = bson.D{{Key: "addresses", Value: tc.in}}
			}
			row, err := m.Row(doc(t, d))
			if tc.err != "" {
				if rej := rejection(t, err); rej.Field != "addresses" || !strings.Contains(rej.Reason, tc.err) {
					t.Fatalf("%+v", rej)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if row.Values[0] != tc.want {
				t.Fatalf("got %v, want %d", row.Values[0], tc.want)
			}
		})
	}
}
