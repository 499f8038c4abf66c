package verify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/amanat/cdc/pkg/transform"
)

// The columns whose values verify decides itself (numeric, objectid,
// references, timestamptz) are read from the document by the code below
// and decoded by decode.go; the transform (the sink's code) only says
// which rows and columns there are, and the values of the other columns.
// So a conversion bug in the sink, even one verify's own transform call
// would reproduce, shows as a difference.

// ownVal is verify's own expectation for one column.
type ownVal struct {
	// set: verify decided the value itself (else the transform's stands).
	set bool
	v   cval
	// ref is a reference's legacy id as verify reads it ("" when absent or
	// unreadable).
	ref string
}

// ownRow is verify's reading of a document's independent columns: one
// ownVal per column of the top table and of every child row, the child
// rows aligned with the transform's (childErr[ci] says why they could not
// be: the document's elements are not the transform's rows).
type ownRow struct {
	top      []ownVal
	children [][][]ownVal
	childErr []string
}

// srcScope is where a column's field is read: the document, or one
// element (or the sub-document) of a child.
type srcScope struct {
	root  bson.Raw
	elem  bson.RawValue // zero at the top level
	child bool
}

// independent reports whether verify decodes column c itself.
func (c *colPlan) independent() bool {
	return c.kind == kNumeric || c.kind == kTime || c.kind == kRef || c.spec.Type == transform.TypeObjectID
}

// own is verify's value for column c in sc, or a zero ownVal when the
// transform's value stands (not an independent column, a default the
// mapping supplies, a function verify does not know).
func (c *colPlan) own(sc srcScope) ownVal {
	if !c.independent() {
		return ownVal{}
	}
	v, ok := c.source(sc)
	if !ok {
		return ownVal{}
	}
	if absent(v, c.spec) {
		if c.spec.Default != nil {
			return ownVal{} // the mapping's literal, not a conversion
		}
		return ownVal{set: true, v: null}
	}
	var d decoded
	switch {
	case c.kind == kNumeric:
		d = number(v)
	case c.kind == kTime:
		d = timestamp(v)
	default: // objectid, ref
		d = objectID(v)
	}
	o := ownVal{set: true, v: cval{s: d.text}}
	if c.kind == kRef && d.bad == "" {
		o.ref = d.text
	}
	return o
}

// absent is the transform's notion of a missing value: no field, null,
// undefined, or one of the column's null_values.
func absent(v bson.RawValue, spec *transform.ColumnSpec) bool {
	switch v.Type {
	case 0, bson.TypeNull, bson.TypeUndefined:
		return true
	case bson.TypeString:
		s, _ := v.StringValueOK()
		for _, nv := range spec.NullValues {
			if s == nv {
				return true
			}
		}
	}
	return false
}

// source reads column c's value in sc (Type 0: absent). ok is false when
// verify cannot read it on its own: $index, an unknown function, a path
// that does not lead anywhere readable (the transform rejects those).
func (c *colPlan) source(sc srcScope) (bson.RawValue, bool) {
	spec := c.spec
	if spec.Func != "" {
		doc, ok := sc.doc()
		if !ok {
			return bson.RawValue{}, false
		}
		return builtinFunc(spec.Func, doc)
	}
	switch {
	case spec.Field == "$":
		return sc.elem, sc.child
	case spec.Field == "$index":
		return bson.RawValue{}, false
	case strings.HasPrefix(spec.Field, "$root."):
		return lookupPath(sc.root, strings.Split(strings.TrimPrefix(spec.Field, "$root."), "."))
	}
	doc, ok := sc.doc()
	if !ok {
		return bson.RawValue{}, false
	}
	return lookupPath(doc, strings.Split(spec.Field, "."))
}

// doc is the document relative paths are read in.
func (sc srcScope) doc() (bson.Raw, bool) {
	if !sc.child {
		return sc.root, true
	}
	d, ok := sc.elem.DocumentOK()
	return d, ok
}

// lookupPath reads a dotted path (the first of duplicate names, as the
// transform reads it); a missing field is Type 0, a path through a
// scalar is not ok.
func lookupPath(doc bson.Raw, path []string) (bson.RawValue, bool) {
	v, err := doc.LookupErr(path...)
	switch {
	case err == nil:
		return v, true
	case errors.Is(err, bsoncore.ErrElementNotFound):
		return bson.RawValue{}, true
	}
	return bson.RawValue{}, false
}

// builtinFunc computes the built-in functions whose meaning verify knows
// (created_at, updated_at: the field, else the next one, else the time in
// the ObjectId _id, to the second). ok is false for any other function.
func builtinFunc(name string, doc bson.Raw) (bson.RawValue, bool) {
	var fields []string
	switch name {
	case "created_at":
		fields = []string{"createdAt"}
	case "updated_at":
		fields = []string{"updatedAt", "createdAt"}
	default:
		return bson.RawValue{}, false
	}
	for _, f := range fields {
		v, ok := lookupPath(doc, []string{f})
		if !ok {
			return bson.RawValue{}, false
		}
		if v.Type != 0 && v.Type != bson.TypeNull && v.Type != bson.TypeUndefined {
			return v, true
		}
	}
	id, ok := lookupPath(doc, []string{"_id"})
	if !ok || id.Type == 0 || id.Type == bson.TypeNull {
		return bson.RawValue{}, true
	}
	if id.Type != bson.TypeObjectID || len(id.Value) != 12 {
		return bson.RawValue{}, false // the transform rejects it
	}
	secs := int64(binary.BigEndian.Uint32(id.Value[:4]))
	return bson.RawValue{Type: bson.TypeDateTime, Value: bsoncore.AppendDateTime(nil, secs*1000)}, true
}

// ownRow reads the independent columns of raw, the child rows aligned
// with row's (the transform's) child sets.
func (p *mappingPlan) ownRow(raw bson.Raw, row *transform.Row) *ownRow {
	o := &ownRow{top: make([]ownVal, len(p.top.cols)), children: make([][][]ownVal, len(p.children)), childErr: make([]string, len(p.children))}
	top := srcScope{root: raw}
	for i := range p.top.cols {
		o.top[i] = p.top.cols[i].own(top)
	}
	for ci := range p.children {
		var want int
		if ci < len(row.Children) {
			want = len(row.Children[ci].Rows)
		}
		o.children[ci], o.childErr[ci] = p.children[ci].ownRows(raw, want)
	}
	return o
}

// ownRows reads the child's elements: the sub-document (kind document),
// or the array's elements with repeated members dropped (a child with a
// key lists a member once: the first element of each key), and their
// independent columns. want is the number of rows the transform made;
// another number of elements cannot be aligned with them and says why.
func (ch *childPlan) ownRows(root bson.Raw, want int) ([][]ownVal, string) {
	v, ok := lookupPath(root, strings.Split(ch.spec.Field, "."))
	if !ok {
		return nil, fmt.Sprintf("%s cannot be read", ch.spec.Field)
	}
	var scopes []srcScope
	switch {
	case v.Type == 0 || v.Type == bson.TypeNull || v.Type == bson.TypeUndefined:
	case ch.spec.Kind == transform.ChildDocument:
		scopes = append(scopes, srcScope{root: root, elem: v, child: true})
	default:
		arr, ok := v.ArrayOK()
		if !ok {
			return nil, fmt.Sprintf("%s is a %s, not an array", ch.spec.Field, v.Type)
		}
		vals, err := arr.Values()
		if err != nil {
			return nil, fmt.Sprintf("%s is not a valid array: %v", ch.spec.Field, err)
		}
		seen := map[string]bool{}
		for i, e := range vals {
			sc := srcScope{root: root, elem: e, child: true}
			if len(ch.spec.Key) > 0 {
				k := ch.memberKey(sc, i)
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			scopes = append(scopes, sc)
		}
	}
	if len(scopes) != want {
		return nil, fmt.Sprintf("%s has %d element(s) where the transform made %d row(s)", ch.spec.Field, len(scopes), want)
	}
	rows := make([][]ownVal, len(scopes))
	for j, sc := range scopes {
		rows[j] = make([]ownVal, len(ch.cols))
		for i := range ch.cols {
			rows[j][i] = ch.cols[i].own(sc)
		}
	}
	return rows, ""
}

// memberKey identifies an element by the child's key columns: verify's
// own value where it has one, else the raw BSON (type and bytes). An
// element whose key cannot be read is its own member (index i).
func (ch *childPlan) memberKey(sc srcScope, i int) string {
	var b strings.Builder
	for _, k := range ch.spec.Key {
		for ci := range ch.cols {
			c := &ch.cols[ci]
			if c.name != k {
				continue
			}
			if o := c.own(sc); o.set {
				b.WriteString("o:" + o.v.String() + "\x00")
				continue
			}
			v, ok := c.source(sc)
			if !ok {
				return "#" + strconv.Itoa(i)
			}
			fmt.Fprintf(&b, "r:%d:%x\x00", v.Type, v.Value)
		}
	}
	return b.String()
}

// ownKey is the document key an ObjectId _id must have (its lower-case
// hex, the form of the legacy id_map keys), "" for other _id types.
func ownKey(raw bson.Raw) string {
	id, err := raw.LookupErr("_id")
	if err != nil || id.Type != bson.TypeObjectID {
		return ""
	}
	d := objectID(id)
	if d.bad != "" {
		return ""
	}
	return d.text
}
