package transform

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Ref is a reference the sink resolves through id_map before writing Row
// (or a ChildRow): Values[Col] receives the parent's new_id (or NULL, per
// Missing).
type Ref struct {
	Col int
	// Column is the column name (in a child row, a column of
	// ChildSet.Table).
	Column string
	// Field is the full dotted path of the reference in the document,
	// array indexes included (e.g. "preferredSellers.2").
	Field      string
	Collection string
	LegacyID   string
	Missing    MissingPolicy
	// Wait bounds policy wait: how long the sink may keep retrying before
	// it dead-letters the document (error class "parked"). Zero for the
	// other policies.
	Wait time.Duration
}

// Row is one target row, Values aligned with Mapping.Columns (the id is
// resolved separately by the sink from the event's key), and the complete
// child sets of the document.
type Row struct {
	Values []any
	Refs   []Ref
	// Children has one ChildSet per Mapping.Children entry, in that
	// order, even when empty: an empty set deletes the stored rows.
	Children []ChildSet
}

// Row converts a document to a row and its child sets. A value a column
// cannot hold exactly returns a *Rejection naming the field (with array
// indexes) and the column; nothing is coerced. Row never panics on a
// well-formed BSON document, whatever its content.
func (m *Mapping) Row(doc bson.Raw) (*Row, error) {
	row := &Row{Values: make([]any, len(m.Columns))}
	top := &scope{root: doc, index: -1}
	if dup := top.indexFields(); dup != nil {
		return nil, m.rejectDuplicate(dup, m.Table, m.columnReading)
	}
	for i := range m.Columns {
		c := &m.Columns[i]
		val, ref, v, err := c.resolve(top, i)
		if err != nil {
			return nil, m.reject(c, top, v, err)
		}
		if ref != nil {
			row.Refs = append(row.Refs, *ref)
			continue
		}
		row.Values[i] = val
	}
	if len(m.Children) > 0 {
		row.Children = make([]ChildSet, len(m.Children))
		for i := range m.Children {
			set, err := m.Children[i].set(m, doc)
			if err != nil {
				return nil, err
			}
			row.Children[i] = set
		}
	}
	return row, nil
}

// scope is where a column's field is looked up: the document at the top
// level; an array element or sub-document in a child.
type scope struct {
	// fields indexes the top-level fields of root on first use, so a
	// mapping of n columns reads the document once, not n times.
	fields map[string]bson.RawValue
	root   bson.Raw
	elem   bson.RawValue // zero at the top level
	child  bool
	index  int    // array index, -1 otherwise
	prefix string // path of elem, for messages
	table  string // child table, for messages
}

func (sc *scope) fieldName(c *ColumnSpec) string {
	name := c.Field
	if c.kind == fieldFunc && name == "" {
		name = "func:" + c.Func
	}
	if !sc.child {
		return name
	}
	switch c.kind {
	case fieldElem, fieldIndex:
		return sc.prefix
	case fieldRoot:
		return strings.TrimPrefix(c.Field, "$root.")
	}
	return sc.prefix + "." + name
}

func (sc *scope) columnName(c *ColumnSpec) string {
	if sc.table == "" {
		return c.Column
	}
	return sc.table + "." + c.Column
}

// scopeDoc is the document relative paths and functions read.
func (sc *scope) scopeDoc() (bson.Raw, error) {
	if !sc.child {
		return sc.root, nil
	}
	d, ok := sc.elem.DocumentOK()
	if !ok {
		return nil, reason(fmt.Sprintf("%s is a %s, not a document", sc.prefix, typeName(sc.elem.Type)))
	}
	return d, nil
}

// lookup reads path below doc, whose own path in the document is base (""
// for the root); Type 0 when a component is absent. Each document or
// array it opens on the way is checked for duplicate keys (checkLevel),
// doc itself too unless checked says its level was checked already.
func lookup(doc bson.Raw, path []string, base string, checked bool) (bson.RawValue, error) {
	cur := doc
	for i, key := range path {
		if !checked || i > 0 {
			if dup := checkLevel(cur, base); dup != nil {
				return bson.RawValue{}, dup
			}
		}
		v, err := cur.LookupErr(key)
		if errors.Is(err, bsoncore.ErrElementNotFound) {
			return bson.RawValue{}, nil
		}
		if err != nil {
			return bson.RawValue{}, reason(fmt.Sprintf("cannot read the field: %v", err))
		}
		if i == len(path)-1 {
			return v, nil
		}
		if v.Type != bson.TypeEmbeddedDocument && v.Type != bson.TypeArray {
			return bson.RawValue{}, reason(fmt.Sprintf("%s is a %s, so the path cannot continue into it", key, typeName(v.Type)))
		}
		cur, base = bson.Raw(v.Value), join(base, key)
	}
	return bson.RawValue{}, nil
}

// source returns the raw value of c in sc (Type 0 when absent).
func (c *ColumnSpec) source(sc *scope) (bson.RawValue, error) {
	switch c.kind {
	case fieldElem:
		return sc.elem, nil
	case fieldIndex:
		return bson.RawValue{Type: bson.TypeInt32, Value: bsoncore.AppendInt32(nil, int32(sc.index))}, nil
	case fieldRoot:
		return lookup(sc.root, c.path, "", true)
	case fieldFunc:
		d, err := sc.scopeDoc()
		if err != nil {
			return bson.RawValue{}, err
		}
		res, err := callFunc(c.fn, d)
		if err != nil {
			return bson.RawValue{}, reason(fmt.Sprintf("func %s: %v", c.Func, err))
		}
		return res, nil
	}
	d, err := sc.scopeDoc()
	if err != nil {
		return bson.RawValue{}, err
	}
	if !sc.child && sc.elem.Type == 0 {
		return sc.lookupTop(d, c.path)
	}
	return lookup(d, c.path, sc.prefix, true)
}

// indexFields indexes the top-level fields of the document, so a mapping
// of n columns reads it once, not n times, and returns the first key that
// appears more than once (a rejection: see dupkeys.go). A malformed
// document is left unindexed for lookup to report.
func (sc *scope) indexFields() *duplicateField {
	elems, err := sc.root.Elements()
	if err != nil {
		return nil
	}
	sc.fields = make(map[string]bson.RawValue, len(elems))
	for _, e := range elems {
		if _, dup := sc.fields[e.Key()]; dup {
			return duplicateOf(sc.root, e.Key(), "")
		}
		sc.fields[e.Key()] = e.Value()
	}
	return nil
}

// lookupTop is lookup on the top-level document through the field index
// (indexFields has checked the top level for duplicates).
func (sc *scope) lookupTop(d bson.Raw, path []string) (bson.RawValue, error) {
	if sc.fields == nil {
		return lookup(d, path, "", true) // malformed: let lookup report it
	}
	v, ok := sc.fields[path[0]]
	if !ok {
		return bson.RawValue{}, nil
	}
	if len(path) == 1 {
		return v, nil
	}
	if v.Type != bson.TypeEmbeddedDocument && v.Type != bson.TypeArray {
		return bson.RawValue{}, reason(fmt.Sprintf("%s is a %s, so the path cannot continue into it", path[0], typeName(v.Type)))
	}
	return lookup(bson.Raw(v.Value), path[1:], path[0], false)
}

// resolve computes column c (index col) in sc: a value, or a reference for
// the sink to resolve. v is the source value, for rejection messages.
func (c *ColumnSpec) resolve(sc *scope, col int) (val any, ref *Ref, v bson.RawValue, err error) {
	v, err = c.source(sc)
	if err != nil {
		return nil, nil, v, err
	}
	present := v.Type != 0 && v.Type != bson.TypeNull && v.Type != bson.TypeUndefined
	if present && len(c.NullValues) > 0 {
		if s, ok := v.StringValueOK(); ok {
			for _, nv := range c.NullValues {
				if s == nv {
					present = false
					break
				}
			}
		}
	}
	if !present {
		if c.Default != nil {
			return c.defaultValue, nil, v, nil
		}
		if c.Required {
			return nil, nil, v, reason("required field is missing or null")
		}
		return nil, nil, v, nil
	}
	if c.Type == TypeRef {
		id, err := objectIDString(v)
		if err != nil {
			return nil, nil, v, err
		}
		return nil, &Ref{Col: col, Column: c.Column, Field: sc.fieldName(c), Collection: c.Ref.Collection,
			LegacyID: id, Missing: c.Ref.Missing, Wait: c.Ref.Wait}, v, nil
	}
	val, err = c.convert(v)
	return val, nil, v, err
}

func (m *Mapping) reject(c *ColumnSpec, sc *scope, v bson.RawValue, err error) *Rejection {
	var dup *duplicateField
	if errors.As(err, &dup) {
		field := dup.field
		if dup.relative {
			field = join(sc.fieldName(c), field)
		}
		return &Rejection{Collection: m.Collection, Field: field, Column: sc.columnName(c),
			Value: duplicateValue(dup.count, dup.first, dup.last), Reason: duplicateReason(field, dup.count)}
	}
	field, value := sc.fieldName(c), ""
	// A string or key inside a jsonb value: name its path and quote it
	// (the whole value could hold the very bytes a text column refuses).
	var nested *nestedRejection
	if errors.As(err, &nested) {
		field, value = join(field, nested.path), nested.value
	} else {
		value = valueText(v)
	}
	return &Rejection{Collection: m.Collection, Field: field, Column: sc.columnName(c), Value: value, Reason: err.Error()}
}

// rejectDuplicate is the rejection of a duplicated key found at the top
// of a document or a child element: column names the column that reads
// the key (columnOf), else fallback (the table).
func (m *Mapping) rejectDuplicate(dup *duplicateField, fallback string, columnOf func(key string) string) *Rejection {
	column := fallback
	if c := columnOf(dup.field); c != "" {
		column = c
	}
	return &Rejection{Collection: m.Collection, Field: dup.field, Column: column,
		Value: duplicateValue(dup.count, dup.first, dup.last), Reason: dup.Error()}
}

// columnReading names the top-level column or child table that reads the
// top-level field key ("" when none does).
func (m *Mapping) columnReading(key string) string {
	for i := range m.Columns {
		if c := &m.Columns[i]; len(c.path) > 0 && c.path[0] == key || c.kind == fieldFunc && c.Field == key {
			return c.Column
		}
	}
	for i := range m.Children {
		if ch := &m.Children[i]; ch.path[0] == key {
			return ch.Table
		}
	}
	return ""
}

// maxValueText bounds the value quoted in a rejection.
const maxValueText = 200

// valueText renders a value for a rejection message, truncated; large
// documents and arrays are summarised rather than rendered.
func valueText(v bson.RawValue) string {
	switch v.Type {
	case 0:
		return "<missing>"
	case bson.TypeDecimal128:
		// The driver renders a non-canonical Decimal128 as the number
		// its BigInt reads (not the value): name the bits instead.
		d, ok := v.Decimal128OK()
		if !ok || d.IsNaN() || d.IsInf() != 0 || canonicalDecimal128(d) == nil {
			break
		}
		high, low := d.GetBytes()
		return "Decimal128 with " + decimal128Bits(high, low)
	case bson.TypeString:
		s, _ := v.StringValueOK()
		if len(s) > maxValueText {
			cut := maxValueText
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			return strconv.Quote(s[:cut]) + fmt.Sprintf("...(truncated, %d bytes)", len(s))
		}
		return strconv.Quote(s)
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		if len(v.Value) > 4*maxValueText {
			return fmt.Sprintf("<%s of %d bytes>", typeName(v.Type), len(v.Value))
		}
	}
	s := v.String()
	if len(s) > maxValueText {
		s = s[:maxValueText] + "...(truncated)"
	}
	return s
}
