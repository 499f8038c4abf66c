package transform_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/transform"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func mustParse(t *testing.T, y string) *transform.Mapping {
	t.Helper()
	m, err := transform.Parse([]byte(y), "test.yaml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

func doc(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	raw, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func rejection(t *testing.T, err error) *transform.Rejection {
	t.Helper()
	if err == nil {
		t.Fatal("accepted, want a rejection")
	}
	rej, ok := transform.AsRejection(err)
	if !ok {
		t.Fatalf("error is not a *Rejection: %v", err)
	}
	return rej
}

// TestParseRefusesInvalidMappings: every malformed mapping names what is
// wrong and wraps ErrInvalidMapping.
func TestParseRefusesInvalidMappings(t *testing.T) {
	const head = "{version: 1, collection: c, table: t, "
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", head + "columns: [{column: a, field: a, type: text, colour: red}]}", "colour"},
		{"unknown type", head + "columns: [{column: a, field: a, type: money}]}", `unknown type "money"`},
		{"bad policy", head + "columns: [{column: a, field: a, type: ref, ref: {collection: x, missing: maybe}}]}", "ref.missing must be"},
		{"wait too short", head + "columns: [{column: a, field: a, type: ref, ref: {collection: x, missing: wait, wait: 100ms}}]}", "ref.wait 100ms is outside"},
		{"wait without wait policy", head + "columns: [{column: a, field: a, type: ref, ref: {collection: x, missing: reject, wait: 5m}}]}", "only for missing: wait"},
		{"decimal default", head + "columns: [{column: a, field: a, type: \"numeric(38,18)\", default: \"0\"}]}", "never coerced"},
		{"enum without values", head + "columns: [{column: a, field: a, type: enum}]}", "needs values"},
		{"labels on text", head + "columns: [{column: a, field: a, type: text, labels: [x]}]}", "only for type enum"},
		{"unknown func", head + "columns: [{column: a, func: no_such_func, type: text}]}", `func "no_such_func" is not registered`},
		{"no field", head + "columns: [{column: a, type: text}]}", "field (or func) is required"},
		{"element field at top", head + "columns: [{column: a, field: $, type: text}]}", "only for child columns"},
		{"dollar path", head + "columns: [{column: a, field: a.$b, type: text}]}", "$-prefixed"},
		{"check on text", head + "columns: [{column: a, field: a, type: text, check: positive}]}", "needs a numeric"},
		{"bad jsonb default", head + "columns: [{column: a, field: a, type: jsonb, default: \"{\"}]}", "not valid JSON"},
		{"bad text[] default", head + "columns: [{column: a, field: a, type: \"text[]\", default: \"x\"}]}", "JSON array"},
		{"child kind", head + "columns: [], children: [{table: c1, parent_column: p, field: xs, kind: list, columns: [{column: a, field: a, type: text}]}]}", "kind must be"},
		{"child index in document", head + "columns: [], children: [{table: c1, parent_column: p, field: x, kind: document, columns: [{column: a, field: $index, type: int}]}]}", `"$index" is only for columns of an array child`},
		{"index not int", head + "columns: [], children: [{table: c1, parent_column: p, field: xs, kind: array, columns: [{column: a, field: $index, type: text}]}]}", "needs an integer"},
		{"child parent column mapped", head + "columns: [], children: [{table: c1, parent_column: p, field: xs, kind: array, columns: [{column: p, field: a, type: text}]}]}", "is the parent column"},
		{"child key unknown", head + "columns: [], children: [{table: c1, parent_column: p, field: xs, kind: array, key: [z], columns: [{column: a, field: a, type: text}]}]}", `key column "z"`},
		{"child table twice", head + "columns: [], children: [{table: t, parent_column: p, field: xs, kind: array, columns: [{column: a, field: a, type: text}]}]}", "filled twice"},
		{"append-only with children", head + "append_only: true, columns: [], children: [{table: c1, parent_column: p, field: xs, kind: array, columns: [{column: a, field: a, type: text}]}]}", "append_only mappings cannot have children"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := transform.Parse([]byte(tc.yaml), "bad.yaml")
			if !errors.Is(err, transform.ErrInvalidMapping) {
				t.Fatalf("want ErrInvalidMapping, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad.yaml") {
				t.Fatalf("error does not say %q:\n%v", tc.want, err)
			}
		})
	}
}

func TestRefWaitDefaultAndCarriedOnRef(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [
		{column: a, field: a, type: ref, ref: {collection: users, missing: wait}},
		{column: b, field: b, type: ref, ref: {collection: users, missing: wait, wait: 90s}},
		{column: c, field: c, type: ref, ref: {collection: users}}]}`)
	a, b := bson.NewObjectID(), bson.NewObjectID()
	row, err := m.Row(doc(t, bson.D{{Key: "a", Value: a}, {Key: "b", Value: b.Hex()}, {Key: "c", Value: nil}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(row.Refs) != 2 {
		t.Fatalf("refs %+v", row.Refs)
	}
	want := []transform.Ref{
		{Col: 0, Column: "a", Field: "a", Collection: "users", LegacyID: a.Hex(), Missing: transform.MissingWait, Wait: transform.DefaultRefWait},
		{Col: 1, Column: "b", Field: "b", Collection: "users", LegacyID: b.Hex(), Missing: transform.MissingWait, Wait: 90 * time.Second},
	}
	for i := range want {
		if row.Refs[i] != want[i] {
			t.Errorf("ref %d = %+v, want %+v", i, row.Refs[i], want[i])
		}
	}
	if m.Columns[2].Ref.Missing != transform.MissingReject {
		t.Errorf("default policy %q, want reject", m.Columns[2].Ref.Missing)
	}
	if row.Values[2] != nil {
		t.Errorf("absent reference = %v, want NULL", row.Values[2])
	}
}

// TestLoadRefusesRefsToUnmappedCollections: a reference that waits for,
// rejects or nulls a missing parent must point at a replicated collection;
// mint does not (sub-document ids).
func TestLoadRefusesRefsToUnmappedCollections(t *testing.T) {
	fsys := mapFS{
		"a.yaml": `{version: 1, collection: a, table: a, columns: [{column: b_id, field: b, type: ref, ref: {collection: ghosts, missing: wait}}, {column: s, field: s, type: ref, ref: {collection: a.subs, missing: mint}}]}`,
	}
	_, err := transform.Load(fsys, ".")
	if !errors.Is(err, transform.ErrInvalidMapping) || !strings.Contains(err.Error(), `references collection "ghosts"`) || strings.Contains(err.Error(), "a.subs") {
		t.Fatalf("got %v", err)
	}
}

func TestEnumLabelsValuesAndNullValues(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [
		{column: p, field: p, type: enum, values: {request.network: request_network}, labels: [request_network, trezor]},
		{column: parent, field: parent, type: ref, null_values: [""], ref: {collection: c, missing: "null"}}]}`)
	for in, want := range map[string]string{"request.network": "request_network", "request_network": "request_network", "trezor": "trezor"} {
		row, err := m.Row(doc(t, bson.D{{Key: "p", Value: in}, {Key: "parent", Value: ""}}))
		if err != nil {
			t.Fatal(err)
		}
		if row.Values[0] != want || len(row.Refs) != 0 || row.Values[1] != nil {
			t.Errorf("%q -> %v, refs %v", in, row.Values, row.Refs)
		}
	}
	rej := rejection(t, second(m.Row(doc(t, bson.D{{Key: "p", Value: "Request Network"}}))))
	if rej.Field != "p" || !strings.Contains(rej.Reason, `unknown enum value "Request Network"`) {
		t.Errorf("%+v", rej)
	}
	rej = rejection(t, second(m.Row(doc(t, bson.D{{Key: "p", Value: "trezor"}, {Key: "parent", Value: "undefined"}}))))
	if rej.Field != "parent" || !strings.Contains(rej.Reason, "is not an ObjectId") {
		t.Errorf("%+v", rej)
	}
}

func second[A, B any](_ A, b B) B { return b }

// TestSignChecksAndNegativeZero: checks apply to decimals and integers; a
// -0 fails positive and non_negative (ambiguous sign), passes non_zero
// never.
func TestSignChecksAndNegativeZero(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [
		{column: pos, field: pos, type: "numeric(38,18)", check: positive},
		{column: nn, field: nn, type: "numeric(38,18)", check: non_negative},
		{column: nz, field: nz, type: "numeric(38,18)", check: non_zero},
		{column: n, field: n, type: int, check: non_negative}]}`)
	negZero := dec(t, "-0")
	for _, tc := range []struct {
		name  string
		d     bson.D
		field string // "" = accepted
	}{
		{"all fine", bson.D{{Key: "pos", Value: dec(t, "0.000000000000000001")}, {Key: "nn", Value: int32(0)}, {Key: "nz", Value: int64(-3)}, {Key: "n", Value: 0.0}}, ""},
		{"zero not positive", bson.D{{Key: "pos", Value: dec(t, "0")}}, "pos"},
		{"negative", bson.D{{Key: "nn", Value: "-0.5"}}, "nn"},
		{"decimal -0 not non-negative", bson.D{{Key: "nn", Value: negZero}}, "nn"},
		{"double -0 not non-negative", bson.D{{Key: "nn", Value: mathNegZero()}}, "nn"},
		{"string -0.00 not non-negative", bson.D{{Key: "nn", Value: "-0.00"}}, "nn"},
		{"-0 not positive", bson.D{{Key: "pos", Value: negZero}}, "pos"},
		{"-0 is zero", bson.D{{Key: "nz", Value: negZero}}, "nz"},
		{"int -0 double", bson.D{{Key: "n", Value: mathNegZero()}}, "n"},
		{"int negative", bson.D{{Key: "n", Value: int32(-1)}}, "n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Row(doc(t, tc.d))
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if rej := rejection(t, err); rej.Field != tc.field {
				t.Fatalf("field %q, want %q (%v)", rej.Field, tc.field, rej)
			}
		})
	}
}

func mathNegZero() float64 {
	z := 0.0
	return -z
}

const childYAML = `{version: 1, collection: orders, table: orders, columns: [{column: title, field: title, type: text}],
  children: [
    {table: order_info, parent_column: order_id, field: info, kind: document, columns: [
       {column: id, field: $root._id, type: ref, required: true, ref: {collection: orders, missing: mint}},
       {column: note, field: note, type: text},
       {column: title_copy, field: $root.title, type: text}]},
    {table: order_lines, parent_column: order_id, field: lines, kind: array, max_rows: 5, key: [sku], columns: [
       {column: ordinal, field: $index, type: int},
       {column: sku, field: sku, type: text, required: true},
       {column: qty, field: qty, type: int, check: positive, required: true}]},
    {table: order_watchers, parent_column: order_id, field: watchers, kind: array, key: [user_id], columns: [
       {column: user_id, field: $, type: ref, required: true, ref: {collection: users, missing: wait}}]}]}`

func TestChildSets(t *testing.T) {
	m := mustParse(t, childYAML)
	if got := m.ChildTables(); len(got) != 3 || got[1] != (transform.ChildTable{Table: "order_lines", ParentColumn: "order_id"}) {
		t.Fatalf("ChildTables = %+v", got)
	}
	id, u1, u2 := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()
	row, err := m.Row(doc(t, bson.D{
		{Key: "_id", Value: id}, {Key: "title", Value: "T"},
		{Key: "info", Value: bson.D{{Key: "note", Value: "n"}}},
		{Key: "lines", Value: bson.A{bson.D{{Key: "sku", Value: "a"}, {Key: "qty", Value: int32(1)}}, bson.D{{Key: "sku", Value: "b"}, {Key: "qty", Value: int64(2)}}}},
		{Key: "watchers", Value: bson.A{u1, u2, u1}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(row.Children) != 3 {
		t.Fatalf("%d child sets", len(row.Children))
	}
	info := row.Children[0]
	if info.Table != "order_info" || info.ParentColumn != "order_id" || strings.Join(info.Columns, ",") != "id,note,title_copy" || len(info.Rows) != 1 {
		t.Fatalf("info set %+v", info)
	}
	if r := info.Rows[0]; r.Values[1] != "n" || r.Values[2] != "T" || len(r.Refs) != 1 ||
		r.Refs[0] != (transform.Ref{Col: 0, Column: "id", Field: "_id", Collection: "orders", LegacyID: id.Hex(), Missing: transform.MissingMint}) {
		t.Fatalf("info row %+v", r)
	}
	lines := row.Children[1]
	if len(lines.Rows) != 2 || lines.Rows[1].Values[0] != int64(1) || lines.Rows[1].Values[1] != "b" || lines.Rows[1].Values[2] != int64(2) {
		t.Fatalf("lines %+v", lines.Rows)
	}
	w := row.Children[2]
	if len(w.Rows) != 2 || w.Rows[0].Refs[0].LegacyID != u1.Hex() || w.Rows[1].Refs[0].Field != "watchers.1" || w.Rows[1].Refs[0].Wait != transform.DefaultRefWait {
		t.Fatalf("watchers (a member listed twice is one row) %+v", w.Rows)
	}

	// Absent children: one empty set each, never nil, so the sink deletes
	// the stored rows.
	row, err = m.Row(doc(t, bson.D{{Key: "_id", Value: id}, {Key: "info", Value: nil}, {Key: "lines", Value: bson.A{}}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range row.Children {
		if s.Rows == nil || len(s.Rows) != 0 {
			t.Fatalf("set %s: %#v, want an empty non-nil set", s.Table, s.Rows)
		}
	}
}

func TestChildRejectionsNameTheElement(t *testing.T) {
	m := mustParse(t, childYAML)
	line := func(sku string, qty any) bson.D { return bson.D{{Key: "sku", Value: sku}, {Key: "qty", Value: qty}} }
	for _, tc := range []struct {
		name          string
		d             bson.D
		field, column string
		reason        string
	}{
		{"bad element value", bson.D{{Key: "lines", Value: bson.A{line("a", 1), line("b", -1)}}}, "lines.1.qty", "order_lines.qty", "must be greater than 0"},
		{"missing in element", bson.D{{Key: "lines", Value: bson.A{bson.D{{Key: "qty", Value: 1}}}}}, "lines.0.sku", "order_lines.sku", "required field is missing"},
		{"element not a document", bson.D{{Key: "lines", Value: bson.A{"a"}}}, "lines.0.sku", "order_lines.sku", "lines.0 is a string, not a document"},
		{"not an array", bson.D{{Key: "lines", Value: "a,b"}}, "lines", "order_lines", "expected an array, got string"},
		{"not a document", bson.D{{Key: "info", Value: bson.A{}}}, "info", "order_info", "expected a document, got array"},
		{"too many rows", bson.D{{Key: "lines", Value: bson.A{line("a", 1), line("b", 1), line("c", 1), line("d", 1), line("e", 1), line("f", 1)}}}, "lines", "order_lines", "the array has 6 elements; the mapping allows at most 5"},
		{"same key, other values", bson.D{{Key: "lines", Value: bson.A{line("a", 1), line("a", 2)}}}, "lines.1", "order_lines", "duplicate key (sku) of lines.0 with different values"},
		{"same key, ordinal differs", bson.D{{Key: "lines", Value: bson.A{line("a", 1), line("a", 1)}}}, "lines.1", "order_lines", "duplicate key"},
		{"member not an ObjectId", bson.D{{Key: "watchers", Value: bson.A{"nobody"}}}, "watchers.0", "order_watchers.user_id", "not an ObjectId"},
		{"null member", bson.D{{Key: "watchers", Value: bson.A{nil}}}, "watchers.0", "order_watchers.user_id", "required field is missing or null"},
		{"path through a scalar", bson.D{{Key: "info", Value: bson.D{{Key: "note", Value: bson.D{}}}}}, "info.note", "order_info.note", "expected a string, got document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := append(bson.D{{Key: "_id", Value: bson.NewObjectID()}}, tc.d...)
			rej := rejection(t, second(m.Row(doc(t, d))))
			if rej.Collection != "orders" || rej.Field != tc.field || rej.Column != tc.column || !strings.Contains(rej.Reason, tc.reason) {
				t.Fatalf("got %+v\nwant field %q column %q reason ~ %q", rej, tc.field, tc.column, tc.reason)
			}
		})
	}
}

func TestPathThroughNonDocument(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [{column: a, field: points.available, type: "numeric(38,18)", required: true}]}`)
	rej := rejection(t, second(m.Row(doc(t, bson.D{{Key: "points", Value: "lots"}}))))
	if rej.Field != "points.available" || !strings.Contains(rej.Reason, "points is a string") {
		t.Fatalf("%+v", rej)
	}
}

func TestDefaults(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [
		{column: meta, field: meta, type: jsonb, default: "{}"},
		{column: tags, field: tags, type: "text[]", default: "[]"},
		{column: n, field: n, type: int, default: "1", check: positive},
		{column: s, field: s, type: enum, labels: [a, b], default: b}]}`)
	row, err := m.Row(doc(t, bson.D{{Key: "meta", Value: nil}}))
	if err != nil {
		t.Fatal(err)
	}
	if row.Values[0] != "{}" || len(row.Values[1].([]string)) != 0 || row.Values[2] != int64(1) || row.Values[3] != "b" {
		t.Fatalf("%#v", row.Values)
	}
	if _, err := transform.Parse([]byte(`{version: 1, collection: c, table: t, columns: [{column: n, field: n, type: int, default: "0", check: positive}]}`), "x"); err == nil {
		t.Fatal("a default that fails the column's own check was accepted")
	}
}
