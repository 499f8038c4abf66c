package transforms_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/transform"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// validExamples is one example per collection that maps without a
// rejection: the base the bad-input corpus mutates.
var validExamples = map[string]string{
	"users":               "full",
	"categories":          "child",
	"requestTemplates":    "full",
	"purchaseRequests":    "full",
	"sellerOffers":        "full",
	"payments":            "request_network",
	"fundsLedger":         "hold",
	"derivedDestinations": "full",
	"trezorAccounts":      "full",
	"pointTransactions":   "referral",
}

func baseDoc(t *testing.T, coll string) bson.D {
	t.Helper()
	var d bson.D
	if err := bson.Unmarshal(readDoc(t, filepath.Join("testdata", coll, validExamples[coll]+".json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func marshal(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	raw, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// outcome maps d and checks the contract: no panic, and either a row or a
// *Rejection of this collection with a field, a value and a reason; when
// field is not "", the rejection must name it (or a path below it).
func outcome(t *testing.T, m *transform.Mapping, raw bson.Raw, field string) (row *transform.Row, rej *transform.Rejection) {
	t.Helper()
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Row panicked: %v", p)
			}
		}()
		row, err = m.Row(raw)
	}()
	if err == nil {
		return row, nil
	}
	rej, ok := transform.AsRejection(err)
	if !ok {
		t.Fatalf("error is not a *Rejection: %v", err)
	}
	if rej.Collection != m.Collection || rej.Field == "" || rej.Value == "" || rej.Reason == "" || rej.Column == "" {
		t.Fatalf("imprecise rejection %+v", rej)
	}
	if field != "" && rej.Field != field && !strings.HasPrefix(rej.Field, field+".") {
		t.Fatalf("rejection names field %q, the bad input is in %q: %+v", rej.Field, field, rej)
	}
	return nil, rej
}

func without(d bson.D, key string) bson.D {
	out := bson.D{}
	for _, e := range d {
		if e.Key != key {
			out = append(out, e)
		}
	}
	return out
}

func with(d bson.D, key string, v any) bson.D {
	out := bson.D{}
	done := false
	for _, e := range d {
		if e.Key == key {
			out = append(out, bson.E{Key: key, Value: v})
			done = true
			continue
		}
		out = append(out, e)
	}
	if !done {
		out = append(out, bson.E{Key: key, Value: v})
	}
	return out
}

func wrongTypes() map[string]any {
	nan, _ := bson.ParseDecimal128("NaN")
	return map[string]any{
		"string":    "not what you expected",
		"empty":     "",
		"int32":     int32(-7),
		"int64":     int64(1) << 60,
		"double":    1.5,
		"bool":      true,
		"null":      nil,
		"array":     bson.A{int32(1), "two", bson.D{{Key: "three", Value: 3}}},
		"document":  bson.D{{Key: "x", Value: int32(1)}},
		"objectid":  bson.NewObjectID(),
		"date":      bson.NewDateTimeFromTime(time.Unix(1, 0)),
		"decimal":   nan,
		"binary":    bson.Binary{Subtype: 0, Data: []byte{0, 1, 2}},
		"regex":     bson.Regex{Pattern: "^a", Options: "i"},
		"timestamp": bson.Timestamp{T: 1, I: 1},
		"minkey":    bson.MinKey{},
		"fakeDec":   bson.D{{Key: "$numberDecimal", Value: "5"}}, // a lean() POJO, not a Decimal128 (CR-10)
	}
}

// TestBadInputCorpus: for every built-in mapping, documents with missing
// fields, wrong types, extra fields, deep nesting, unicode and control
// characters, field names with '.' and '$', a 10 MB document and huge
// arrays either map correctly or are rejected naming the field; nothing
// panics.
func TestBadInputCorpus(t *testing.T) {
	set := builtin(t)
	for _, coll := range set.Collections() {
		m, _ := set.Get(coll)
		base := baseDoc(t, coll)
		baseOut := render(m, marshal(t, base))
		if strings.Contains(baseOut, "\nrejected\n") {
			t.Fatalf("%s: the base example is rejected:\n%s", coll, baseOut)
		}
		t.Run(coll, func(t *testing.T) {
			t.Run("missing fields", func(t *testing.T) {
				for _, e := range base {
					outcome(t, m, marshal(t, without(base, e.Key)), e.Key)
				}
				outcome(t, m, marshal(t, bson.D{}), "")
				outcome(t, m, marshal(t, bson.D{{Key: "_id", Value: bson.NewObjectID()}}), "")
			})
			t.Run("wrong types", func(t *testing.T) {
				for _, e := range base {
					for name, v := range wrongTypes() {
						if e.Key == "_id" && name == "null" {
							continue // a null _id is not a document key
						}
						t.Run(e.Key+"="+name, func(t *testing.T) { outcome(t, m, marshal(t, with(base, e.Key, v)), e.Key) })
					}
				}
			})
			t.Run("extra fields are ignored", func(t *testing.T) {
				d := append(bson.D{}, base...)
				d = append(d,
					bson.E{Key: "unexpected", Value: bson.D{{Key: "nested", Value: bson.A{1, 2, 3}}}},
					bson.E{Key: "amount.x", Value: "dotted name"},
					bson.E{Key: "$weird", Value: "dollar name"},
					bson.E{Key: "a.b.c", Value: bson.D{{Key: "$set", Value: int32(1)}}},
					bson.E{Key: "", Value: "empty name"},
					bson.E{Key: "ünïcödé ключ 鍵", Value: int32(1)},
				)
				if got := render(m, marshal(t, d)); got != baseOut {
					t.Fatalf("extra fields changed the output:\n%s\nwant\n%s", got, baseOut)
				}
			})
			t.Run("dotted and dollar names are not paths", func(t *testing.T) {
				// A literal "x.y" key is not the path x.y: each mapped
				// dotted path moved into a literal key reads as missing.
				for _, c := range m.Columns {
					if !strings.Contains(c.Field, ".") || strings.HasPrefix(c.Field, "$") || c.Func != "" {
						continue
					}
					top := strings.Split(c.Field, ".")[0]
					d := with(without(base, top), c.Field, int32(1))
					_, rej := outcome(t, m, marshal(t, d), "")
					// The first required path under the removed sub-document is
					// named (it may be a sibling of c).
					if c.Required && (rej == nil || !strings.HasPrefix(rej.Field, top+".") || !strings.Contains(rej.Reason, "missing")) {
						t.Errorf("%s: a literal %q key was taken for the path: %+v", c.Column, c.Field, rej)
					}
				}
			})
			t.Run("deep nesting", func(t *testing.T) {
				var deep any = "bottom"
				for i := 0; i < 150; i++ {
					deep = bson.D{{Key: fmt.Sprintf("l%d", i), Value: deep}, {Key: "arr", Value: bson.A{int32(i)}}}
				}
				outcome(t, m, marshal(t, with(base, "deep", deep)), "")
				for _, e := range base {
					outcome(t, m, marshal(t, with(base, e.Key, deep)), e.Key)
				}
			})
			t.Run("unicode and control characters", func(t *testing.T) {
				kept := "Ünïcödé — 日本語 — مرحبا — 👩🏽‍💻 e\u0301 \u2028\u2029 \t\r\n\x01\x1f\x7f \\ \" ' ` <script>"
				for _, c := range m.Columns {
					if c.Type != transform.TypeText || c.Func != "" || strings.HasPrefix(c.Field, "$") {
						continue
					}
					d := setPath(base, c.Field, kept)
					row, rej := outcome(t, m, marshal(t, d), c.Field)
					if rej != nil {
						t.Fatalf("%s: a valid string was rejected: %+v", c.Field, rej)
					}
					if got := row.Values[colIndex(m, c.Column)]; got != kept {
						t.Fatalf("%s: stored %q, want %q unchanged", c.Field, got, kept)
					}
					for _, bad := range []struct{ s, reason string }{{"nul\x00byte", "NUL"}, {"bad \xff\xfe utf8", "not valid UTF-8"}} {
						_, rej := outcome(t, m, marshal(t, setPath(base, c.Field, bad.s)), c.Field)
						if rej == nil || !strings.Contains(rej.Reason, bad.reason) {
							t.Fatalf("%s = %q: want a rejection (%s), got %+v", c.Field, bad.s, bad.reason, rej)
						}
					}
				}
			})
			t.Run("10 MB document", func(t *testing.T) {
				blob := strings.Repeat("0123456789abcdef", 10<<20/16)
				start := time.Now()
				if got := render(m, marshal(t, with(base, "blob", blob))); got != baseOut {
					t.Fatalf("an unmapped 10 MB field changed the output")
				}
				for _, c := range m.Columns {
					if c.Type == transform.TypeText && c.Func == "" && !strings.Contains(c.Field, ".") {
						row, rej := outcome(t, m, marshal(t, with(base, c.Field, blob)), c.Field)
						if rej != nil || row.Values[colIndex(m, c.Column)] != blob {
							t.Fatalf("%s: a 10 MB string was not kept whole: %+v", c.Field, rej)
						}
						break
					}
				}
				if took := time.Since(start); took > 10*time.Second {
					t.Fatalf("10 MB documents took %s", took)
				}
			})
		})
	}
}

// TestHugeArrays: child arrays up to max_rows map to that many rows; beyond
// it the document is rejected with the count; text[] columns keep every
// element.
func TestHugeArrays(t *testing.T) {
	set := builtin(t)
	m, _ := set.Get("purchaseRequests")
	base := baseDoc(t, "purchaseRequests")

	specs := make(bson.A, 50_000)
	for i := range specs {
		specs[i] = bson.D{{Key: "name", Value: fmt.Sprintf("spec %d", i)}, {Key: "value", Value: "v"}}
	}
	row, _ := outcome(t, m, marshal(t, with(base, "specifications", specs)), "specifications")
	if row == nil || len(childSet(row, "purchase_request_specifications").Rows) != 50_000 {
		t.Fatal("50,000 specifications did not map to 50,000 rows")
	}

	sellers := make(bson.A, transform.DefaultMaxChildRows+1)
	for i := range sellers {
		sellers[i] = bson.NewObjectID()
	}
	_, rej := outcome(t, m, marshal(t, with(base, "preferredSellers", sellers)), "preferredSellers")
	if rej == nil || rej.Field != "preferredSellers" || rej.Column != "purchase_request_preferred_sellers" ||
		!strings.Contains(rej.Reason, fmt.Sprintf("the array has %d elements; the mapping allows at most %d", transform.DefaultMaxChildRows+1, transform.DefaultMaxChildRows)) {
		t.Fatalf("want a max_rows rejection, got %+v", rej)
	}
	if len(rej.Value) > 100 {
		t.Fatalf("the rejection quotes %d bytes of the array", len(rej.Value))
	}

	tags := make(bson.A, 500_000)
	for i := range tags {
		tags[i] = "t"
	}
	row, _ = outcome(t, m, marshal(t, with(base, "tags", tags)), "tags")
	if row == nil || len(row.Values[colIndex(m, "tags")].([]string)) != 500_000 {
		t.Fatal("500,000 tags were not kept")
	}
	tags[250_000] = int32(1)
	_, rej = outcome(t, m, marshal(t, with(base, "tags", tags)), "tags")
	if rej == nil || !strings.Contains(rej.Reason, "element 250000: expected a string, got int32") {
		t.Fatalf("%+v", rej)
	}
}

func colIndex(m *transform.Mapping, col string) int {
	for i, c := range m.Columns {
		if c.Column == col {
			return i
		}
	}
	panic("no column " + col)
}

func childSet(row *transform.Row, table string) transform.ChildSet {
	for _, s := range row.Children {
		if s.Table == table {
			return s
		}
	}
	panic("no child set " + table)
}

// setPath sets a dotted path in a copy of d, creating sub-documents.
func setPath(d bson.D, path string, v any) bson.D {
	key, rest, nested := strings.Cut(path, ".")
	if !nested {
		return with(d, key, v)
	}
	var sub bson.D
	for _, e := range d {
		if e.Key == key {
			if s, ok := e.Value.(bson.D); ok {
				sub = s
			}
		}
	}
	return with(d, key, setPath(sub, rest, v))
}
