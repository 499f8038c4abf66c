package verify

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/transform"
)

// checkEnums compares, for every enum column (child tables included), the
// distinct values its field takes in MongoDB with the mapping and the
// column's Postgres enum labels: every value present in Mongo must have a
// mapping, and its label must be one of the enum's. A value without one
// is dead-lettered by the sink on every document that holds it, which the
// document comparison only sees for the documents it compares (a sample
// may miss them all); this check sees every document.
const checkEnums = "enum_completeness"

// enumField is one enum column and the Mongo path of its values.
type enumField struct {
	table string
	col   colPlan
	path  string // dotted path for distinct ("" when it cannot be read so)
}

// enumFields lists the plan's enum columns with the paths distinct reads
// them at: a child column's path runs through the child's array (distinct
// flattens arrays) or sub-document.
func (p *mappingPlan) enumFields() []enumField {
	var out []enumField
	add := func(table, prefix string, cols []colPlan) {
		for _, c := range cols {
			if c.spec.Type != transform.TypeEnum {
				continue
			}
			f := enumField{table: table, col: c}
			switch {
			case c.spec.Func != "" || c.spec.Field == "$index":
			case c.spec.Field == "$":
				f.path = prefix
			case strings.HasPrefix(c.spec.Field, "$root."):
				f.path = strings.TrimPrefix(c.spec.Field, "$root.")
			case prefix == "":
				f.path = c.spec.Field
			default:
				f.path = prefix + "." + c.spec.Field
			}
			out = append(out, f)
		}
	}
	add(p.top.table, "", p.top.cols)
	for _, ch := range p.children {
		add(ch.table, ch.spec.Field, ch.cols)
	}
	return out
}

// enumCheck runs checkEnums for one collection.
func (v *Verifier) enumCheck(ctx context.Context, plan *mappingPlan, ch *Check) error {
	coll := plan.m.Collection
	ch.Counts["columns"], ch.Counts["values"] = 0, 0
	for _, f := range plan.enumFields() {
		ch.Counts["columns"]++
		if f.path == "" {
			ch.note("%s.%s is computed (func %s): its values are checked by document_diff only", f.table, f.col.name, f.col.spec.Func)
			continue
		}
		labels, err := v.pg.enumLabels(ctx, f.table, f.col.name)
		if err != nil {
			return err
		}
		vals, err := v.mongo.distinct(ctx, coll, f.path)
		if err != nil {
			return err
		}
		for _, val := range vals {
			ch.Counts["values"]++
			if ex, bad := enumProblem(f, val, labels); bad {
				ch.mismatch(ex)
			}
		}
	}
	return nil
}

// enumProblem says what is wrong with one distinct value of f (bad false:
// nothing). Null and missing values are the column's required and default
// settings' business, not the enum's.
func enumProblem(f enumField, val bson.RawValue, labels map[string]bool) (Example, bool) {
	ex := Example{Table: f.table, Column: f.col.name}
	switch val.Type {
	case bson.TypeNull, bson.TypeUndefined:
		return ex, false
	case bson.TypeString:
	default:
		ex.Mongo = clip(val.String())
		ex.Detail = fmt.Sprintf("field %s holds a %s value in MongoDB, not a string: no enum label can stand for it", f.path, val.Type)
		return ex, true
	}
	s := val.StringValue()
	for _, nv := range f.col.spec.NullValues {
		if s == nv {
			return ex, false
		}
	}
	ex.Mongo = s
	label, ok := f.col.spec.Values[s]
	if !ok {
		known := make([]string, 0, len(f.col.spec.Values))
		for k := range f.col.spec.Values {
			known = append(known, k)
		}
		sort.Strings(known)
		ex.Detail = fmt.Sprintf("value %q of field %s is in MongoDB but the mapping has no label for it (mapped: %s): the sink dead-letters every document that holds it",
			s, f.path, strings.Join(known, ", "))
		return ex, true
	}
	if !labels[label] {
		ex.Postgres = label
		ex.Detail = fmt.Sprintf("value %q of field %s maps to %q, which is not a label of the column's Postgres enum type", s, f.path, label)
		return ex, true
	}
	return ex, false
}

// distinct returns the distinct values of a dotted path over the whole
// collection (arrays flattened), as raw values.
func (m *mongoSide) distinct(ctx context.Context, coll, path string) ([]bson.RawValue, error) {
	var out []bson.RawValue
	_, _, err := m.timed(ctx, "read the distinct values of "+coll+"."+path, func(sc context.Context) error {
		raw, err := m.db.RunCommand(sc, bson.D{{Key: "distinct", Value: coll}, {Key: "key", Value: path}, {Key: "query", Value: bson.D{}}}).Raw()
		if err != nil {
			return err
		}
		arr, ok := raw.Lookup("values").ArrayOK()
		if !ok {
			return fmt.Errorf("distinct %s.%s: the reply has no values array", coll, path)
		}
		out, err = arr.Values()
		return err
	})
	return out, err
}
