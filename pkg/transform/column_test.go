package transform_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/transform"
)

// TestColumnCompileErrors: one row per rule of a column's compilation.
// Each column breaks one rule and Parse refuses the mapping with
// ErrInvalidMapping and exactly the message an operator reads: the file,
// where the column is, and why.
func TestColumnCompileErrors(t *testing.T) {
	// top wraps one top-level column, child one column of an array child
	// (c1) and doc one column of a sub-document child.
	top := func(col string) string { return "{version: 1, collection: c, table: t, columns: [" + col + "]}" }
	child := func(kind, col string) string {
		return "{version: 1, collection: c, table: t, columns: [], children: [{table: c1, parent_column: p, field: xs, kind: " + kind + ", columns: [" + col + "]}]}"
	}
	const (
		atTop   = "bad.yaml: columns[0] (a): "
		inChild = "bad.yaml: children[0] (c1): columns[0] (a): "
	)
	for _, tc := range []struct {
		rule, yaml, want string
	}{
		{"column is an identifier", top("{column: A, field: a, type: text}"), `bad.yaml: columns[0] (A): column "A" is not a lower-case identifier`},
		{"func is registered", top("{column: a, func: no_such_func, type: text}"),
			atTop + `func "no_such_func" is not registered (registered: ` + strings.Join(transform.FuncNames(), ", ") + ")"},
		{"field or func", top("{column: a, type: text}"), atTop + "field (or func) is required"},
		{"$ only in a child", top("{column: a, field: $, type: text}"), atTop + `field "$" (the element) is only for child columns`},
		{"$index only in an array child", top("{column: a, field: $index, type: int}"), atTop + `field "$index" is only for columns of an array child`},
		{"$index not in a sub-document", child("document", "{column: a, field: $index, type: int}"), inChild + `field "$index" is only for columns of an array child`},
		{"$root only in a child", top("{column: a, field: $root.x, type: text}"), atTop + `field "$root.<path>" is only for child columns; use the path`},
		{"empty path component", top("{column: a, field: a..b, type: text}"), atTop + `field "a..b": empty or $-prefixed path component`},
		{"$-prefixed path component", top("{column: a, field: a.$b, type: text}"), atTop + `field "a.$b": empty or $-prefixed path component`},
		{"$root path components", child("array", "{column: a, field: $root.$x, type: text}"), inChild + `field "$root.$x": empty or $-prefixed path component`},
		{"numeric precision at least 1", top(`{column: a, field: a, type: "numeric(0,0)"}`), atTop + "invalid numeric(0,0)"},
		{"numeric precision at most 1000", top(`{column: a, field: a, type: "numeric(1001,2)"}`), atTop + "invalid numeric(1001,2)"},
		{"numeric scale within precision", top(`{column: a, field: a, type: "numeric(5,6)"}`), atTop + "invalid numeric(5,6)"},
		{"doubles only for numeric", top("{column: a, field: a, type: bigint, doubles: shortest}"),
			atTop + "doubles is only for numeric(P,S) columns (integer columns take a double only when it is an exact integer up to 2^53)"},
		{"doubles exact or shortest", top(`{column: a, field: a, type: "numeric(10,2)", doubles: round}`), atTop + `doubles must be exact or shortest, got "round"`},
		{"known type", top("{column: a, field: a, type: money}"), atTop + `unknown type "money"`},
		{"ref needs a collection", top("{column: a, field: a, type: ref}"), atTop + "type ref needs ref.collection"},
		{"ref needs a non-empty collection", top("{column: a, field: a, type: ref, ref: {missing: mint}}"), atTop + "type ref needs ref.collection"},
		{"ref policy", top("{column: a, field: a, type: ref, ref: {collection: x, missing: maybe}}"),
			atTop + `ref.missing must be mint, null, reject or wait, got "maybe"`},
		{"ref wait at least a second", top("{column: a, field: a, type: ref, ref: {collection: x, missing: wait, wait: 100ms}}"),
			atTop + "ref.wait 100ms is outside [1s, 168h0m0s] (write a duration such as 5m)"},
		{"ref wait at most a week", top("{column: a, field: a, type: ref, ref: {collection: x, missing: wait, wait: 169h}}"),
			atTop + "ref.wait 169h0m0s is outside [1s, 168h0m0s] (write a duration such as 5m)"},
		{"ref wait only with policy wait", top("{column: a, field: a, type: ref, ref: {collection: x, wait: 5m}}"), atTop + "ref.wait is only for missing: wait"},
		{"enum label not mapped elsewhere", top("{column: a, field: a, type: enum, values: {x: y}, labels: [x]}"),
			atTop + `enum value "x" is both a label and mapped to "y"`},
		{"enum needs values", top("{column: a, field: a, type: enum}"), atTop + "type enum needs values (document value -> Postgres label) or labels"},
		{"$index is an integer", child("array", "{column: a, field: $index, type: text}"), inChild + `field "$index" needs an integer column type`},
		{"ref only for type ref", top("{column: a, field: a, type: text, ref: {collection: x}}"), atTop + "ref is only for type ref"},
		{"values only for enum", top("{column: a, field: a, type: text, values: {x: y}}"), atTop + "values, labels and enum_type are only for type enum"},
		{"labels only for enum", top("{column: a, field: a, type: text, labels: [x]}"), atTop + "values, labels and enum_type are only for type enum"},
		{"enum_type only for enum", top("{column: a, field: a, type: text, enum_type: e}"), atTop + "values, labels and enum_type are only for type enum"},
		{"no decimal default", top(`{column: a, field: a, type: "numeric(38,18)", default: "0"}`),
			atTop + "a decimal column takes no default: a missing or null amount is rejected, never coerced (audit CR-4)"},
		{"default of the column's type", top(`{column: a, field: a, type: int, default: "x"}`),
			atTop + `default "x": strconv.ParseInt: parsing "x": invalid syntax`},
		{"default passes the check", top(`{column: a, field: a, type: int, check: positive, default: "0"}`), atTop + `default "0": must be greater than 0`},
		{"enum default is a label", top(`{column: a, field: a, type: enum, labels: [x], default: "y"}`), atTop + `default "y": not one of the mapped enum labels`},
		{"no default for a type without one", top(`{column: a, field: a, type: timestamptz, default: "now"}`), atTop + `default "now": type timestamptz takes no default`},
		{"check on a number", top("{column: a, field: a, type: text, check: positive}"), atTop + "check positive needs a numeric or integer column"},
		{"check name", top("{column: a, field: a, type: int, check: even}"), atTop + `check must be positive, non_negative or non_zero, got "even"`},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			_, err := transform.Parse([]byte(tc.yaml), "bad.yaml")
			if err == nil {
				t.Fatalf("Parse accepted %s; want %q", tc.yaml, tc.want)
			}
			if !errors.Is(err, transform.ErrInvalidMapping) {
				t.Fatalf("error %v does not wrap ErrInvalidMapping", err)
			}
			got := strings.TrimPrefix(err.Error(), transform.ErrInvalidMapping.Error()+": ")
			if got != tc.want {
				t.Fatalf("error\n  %q\nwant\n  %q", got, tc.want)
			}
		})
	}
}

// TestColumnCompileAccepts: the edges of the rules above are accepted,
// and compiling fills in the defaults a column leaves out.
func TestColumnCompileAccepts(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [
		{column: a, field: a, type: "numeric(1000,1000)"},
		{column: b, field: b, type: "numeric(10,2)", doubles: shortest},
		{column: r, field: r, type: ref, ref: {collection: x, missing: wait, wait: 1s}},
		{column: s, field: s, type: ref, ref: {collection: x, missing: wait, wait: 168h}},
		{column: e, field: e, type: enum, values: {x: x}, labels: [x], default: "x"},
		{column: n, field: n, type: smallint, check: non_negative, default: "0"}],
		children: [{table: c1, parent_column: p, field: xs, kind: array, columns: [
		{column: i, field: $index, type: bigint},
		{column: el, field: $, type: text},
		{column: o, field: $root.a.b, type: text}]}]}`)
	if got := m.Columns[0].Doubles; got != transform.DoublesExact {
		t.Errorf("numeric column without doubles: %q, want %q", got, transform.DoublesExact)
	}
	if got := m.Columns[1].Doubles; got != transform.DoublesShortest {
		t.Errorf("doubles: shortest became %q", got)
	}
	if got := m.Columns[0].Type; got != transform.TypeNumeric {
		t.Errorf("numeric(1000,1000) has type %q, want %q", got, transform.TypeNumeric)
	}
}
