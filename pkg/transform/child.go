package transform

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// DefaultMaxChildRows bounds the rows one array child may produce for one
// document unless the child sets max_rows: a larger array is rejected with
// its size rather than written as a transaction that could exhaust memory.
const DefaultMaxChildRows = 100_000

// Child kinds.
const (
	// ChildArray: one row per element of an array field.
	ChildArray = "array"
	// ChildDocument: one row for a sub-document (none when it is missing
	// or null).
	ChildDocument = "document"
)

// ChildSpec maps an array or a sub-document of the document to the rows of
// a child table. The sink replaces the stored set on every version of the
// parent document (delete the parent's rows, insert these), in the parent's
// transaction.
type ChildSpec struct {
	// Table is the child table, optionally schema-qualified.
	Table string `yaml:"table"`
	// ParentColumn is the FK column that receives the parent row's id.
	ParentColumn string `yaml:"parent_column"`
	// Field is the path of the array or sub-document in the document.
	Field string `yaml:"field"`
	// Kind is array or document.
	Kind string `yaml:"kind"`
	// Columns map element fields to the other columns (see ColumnSpec.Field
	// for the pseudo fields $, $index and $root.<path>).
	Columns []ColumnSpec `yaml:"columns"`
	// Key names columns that identify a row within the set (the table's
	// key besides the parent column). Rows with the same key and the same
	// values are one row (a set lists a member once); the same key with
	// different values is a rejection. Empty: no de-duplication.
	Key []string `yaml:"key"`
	// MaxRows bounds an array child; default DefaultMaxChildRows.
	MaxRows int `yaml:"max_rows"`

	path     []string
	colNames []string
	keyIdx   []int
}

// ChildTable names a child table and the column that holds the parent's
// id.
type ChildTable struct{ Table, ParentColumn string }

// ChildSet is the complete set of rows of one child table for one parent
// document; the sink replaces the stored set with it (deletes the parent's
// child rows, inserts these) in the parent's transaction.
type ChildSet struct {
	Table        string   // child table, optionally schema-qualified
	ParentColumn string   // FK column holding the parent's id
	Columns      []string // the other columns, in Values order
	Rows         []ChildRow
}

// ChildRow is one row of a ChildSet.
type ChildRow struct {
	Values []any
	Refs   []Ref // Ref.Col indexes Values
}

// ChildTables lists the mapping's child tables in declaration (dependency)
// order. Before a hard delete of the parent row the sink deletes the
// parent's rows of each, in reverse order.
func (m *Mapping) ChildTables() []ChildTable {
	out := make([]ChildTable, len(m.Children))
	for i, ch := range m.Children {
		out[i] = ChildTable{Table: ch.Table, ParentColumn: ch.ParentColumn}
	}
	return out
}

// ColumnNames lists the child's columns other than the parent column, in
// ChildRow.Values order.
func (ch *ChildSpec) ColumnNames() []string {
	return append([]string(nil), ch.colNames...)
}

func (ch *ChildSpec) compile() error {
	if !tableRE.MatchString(ch.Table) {
		return fmt.Errorf("table %q must be a lower-case identifier, optionally schema-qualified", ch.Table)
	}
	if !identRE.MatchString(ch.ParentColumn) {
		return fmt.Errorf("parent_column %q is not a lower-case identifier", ch.ParentColumn)
	}
	if ch.Field == "" {
		return fmt.Errorf("field (the array or sub-document) is required")
	}
	ch.path = strings.Split(ch.Field, ".")
	for _, p := range ch.path {
		if p == "" || strings.HasPrefix(p, "$") {
			return fmt.Errorf("field %q: empty or $-prefixed path component", ch.Field)
		}
	}
	switch ch.Kind {
	case ChildArray, ChildDocument:
	default:
		return fmt.Errorf("kind must be %s or %s, got %q", ChildArray, ChildDocument, ch.Kind)
	}
	switch {
	case ch.MaxRows < 0:
		return fmt.Errorf("max_rows must not be negative")
	case ch.MaxRows == 0:
		ch.MaxRows = DefaultMaxChildRows
	}
	if len(ch.Columns) == 0 {
		return fmt.Errorf("a child needs columns")
	}
	seen := map[string]int{ch.ParentColumn: -1}
	ch.colNames = make([]string, len(ch.Columns))
	for i := range ch.Columns {
		c := &ch.Columns[i]
		if _, dup := seen[c.Column]; dup {
			return fmt.Errorf("columns[%d]: column %q mapped twice (or is the parent column)", i, c.Column)
		}
		seen[c.Column] = i
		if err := c.compile(true, ch.Kind == ChildArray); err != nil {
			return fmt.Errorf("columns[%d] (%s): %v", i, c.Column, err)
		}
		ch.colNames[i] = c.Column
	}
	ch.keyIdx = nil
	for _, k := range ch.Key {
		i, ok := seen[k]
		if !ok || i < 0 {
			return fmt.Errorf("key column %q is not one of the child's columns", k)
		}
		ch.keyIdx = append(ch.keyIdx, i)
	}
	return nil
}

// set builds the child set of one document.
func (ch *ChildSpec) set(m *Mapping, doc bson.Raw) (ChildSet, error) {
	set := ChildSet{Table: ch.Table, ParentColumn: ch.ParentColumn, Columns: ch.colNames, Rows: []ChildRow{}}
	rejectWhole := func(v bson.RawValue, err error) error {
		return &Rejection{Collection: m.Collection, Field: ch.Field, Column: ch.Table, Value: valueText(v), Reason: err.Error()}
	}
	v, err := lookup(doc, ch.path, "", true)
	if err != nil {
		var dup *duplicateField
		if errors.As(err, &dup) {
			return set, m.rejectDuplicate(dup, ch.Table, func(string) string { return "" })
		}
		return set, rejectWhole(v, err)
	}
	if v.Type == 0 || v.Type == bson.TypeNull || v.Type == bson.TypeUndefined {
		return set, nil
	}
	switch ch.Kind {
	case ChildDocument:
		if v.Type != bson.TypeEmbeddedDocument {
			return set, rejectWhole(v, reason(fmt.Sprintf("expected a document, got %s", typeName(v.Type))))
		}
		row, err := ch.row(m, &scope{root: doc, elem: v, child: true, index: -1, prefix: ch.Field, table: ch.Table})
		if err != nil {
			return set, err
		}
		set.Rows = append(set.Rows, row)
		return set, nil
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return set, rejectWhole(v, reason(fmt.Sprintf("expected an array, got %s", typeName(v.Type))))
	}
	n := 0
	if err := forEachElement(arr, func(int, bson.RawValue) error { n++; return nil }); err != nil {
		return set, rejectWhole(v, err)
	}
	if n > ch.MaxRows {
		return set, rejectWhole(v, reason(fmt.Sprintf("the array has %d elements; the mapping allows at most %d rows in %s (max_rows)", n, ch.MaxRows, ch.Table)))
	}
	set.Rows = make([]ChildRow, 0, n)
	elems := make([]int, 0, n) // element index of each kept row
	var seen map[string]int
	if len(ch.keyIdx) > 0 {
		seen = make(map[string]int, n)
	}
	err = forEachElement(arr, func(i int, e bson.RawValue) error {
		sc := &scope{root: doc, elem: e, child: true, index: i, prefix: ch.Field + "." + strconv.Itoa(i), table: ch.Table}
		row, err := ch.row(m, sc)
		if err != nil {
			return err
		}
		if seen != nil {
			k := row.key(ch.keyIdx)
			if j, dup := seen[k]; dup {
				if row.key(nil) == set.Rows[j].key(nil) {
					return nil // the same member listed twice: one row
				}
				return &Rejection{Collection: m.Collection, Field: sc.prefix, Column: ch.Table, Value: valueText(e),
					Reason: fmt.Sprintf("duplicate key (%s) of %s.%d with different values", strings.Join(ch.Key, ", "), ch.Field, elems[j])}
			}
			seen[k] = len(set.Rows)
		}
		set.Rows = append(set.Rows, row)
		elems = append(elems, i)
		return nil
	})
	if err != nil {
		if _, ok := AsRejection(err); ok {
			return set, err
		}
		return set, rejectWhole(v, err)
	}
	return set, nil
}

// row converts one element (or the sub-document) to a child row. An
// element document is checked for duplicate keys first, whole (its
// columns' lookups then skip its level).
func (ch *ChildSpec) row(m *Mapping, sc *scope) (ChildRow, error) {
	row := ChildRow{Values: make([]any, len(ch.Columns))}
	if d, ok := sc.elem.DocumentOK(); ok {
		if dup := checkLevel(d, sc.prefix); dup != nil {
			return row, m.rejectDuplicate(dup, ch.Table, ch.columnReading(sc.prefix))
		}
	}
	for i := range ch.Columns {
		c := &ch.Columns[i]
		val, ref, v, err := c.resolve(sc, i)
		if err != nil {
			return row, m.reject(c, sc, v, err)
		}
		if ref != nil {
			row.Refs = append(row.Refs, *ref)
			continue
		}
		row.Values[i] = val
	}
	return row, nil
}

// columnReading returns a function naming the child table's column that
// reads a duplicated key of the element at prefix ("" when none does).
func (ch *ChildSpec) columnReading(prefix string) func(field string) string {
	return func(field string) string {
		key := strings.TrimPrefix(field, prefix+".")
		for i := range ch.Columns {
			if c := &ch.Columns[i]; c.kind == fieldPath && c.path[0] == key || c.kind == fieldFunc && c.Field == key {
				return ch.Table + "." + c.Column
			}
		}
		return ""
	}
}

// key renders the given columns (all when cols is nil) of a row for
// comparison; references compare by their legacy id.
func (r *ChildRow) key(cols []int) string {
	var b strings.Builder
	each := func(i int) {
		for _, ref := range r.Refs {
			if ref.Col == i {
				fmt.Fprintf(&b, "ref:%s/%s\x00", ref.Collection, ref.LegacyID)
				return
			}
		}
		fmt.Fprintf(&b, "%T:%v\x00", r.Values[i], r.Values[i])
	}
	if cols == nil {
		for i := range r.Values {
			each(i)
		}
	} else {
		for _, i := range cols {
			each(i)
		}
	}
	return b.String()
}
