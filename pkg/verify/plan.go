package verify

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/transform"
)

// colPlan is how one mapped column is read and compared.
type colPlan struct {
	name string
	kind kind
	spec *transform.ColumnSpec
}

// tablePlan is a table's mapped columns (the id and the parent column
// excluded), its status column and its numeric columns.
type tablePlan struct {
	table  string
	cols   []colPlan
	status int   // index in cols of the "status" column, -1 when none
	money  []int // indexes in cols of numeric columns
}

// childPlan is one child table of a mapping.
type childPlan struct {
	tablePlan
	spec      *transform.ChildSpec
	parentCol string
}

// mappingPlan is everything verify needs to read one collection.
type mappingPlan struct {
	m        *transform.Mapping
	idCol    string
	uuidID   bool   // id through id_map (uuid); else the key string itself
	soft     string // soft-delete column, "" for hard deletes
	top      tablePlan
	children []childPlan
	// nullRefs: the mapping has top-level references with policy null.
	nullRefs bool
	// row is the transform verify runs for the structure of the rows
	// (Mapping.Row, the sink's code); a test replaces it with a broken
	// converter to prove the values verify decodes itself do not depend
	// on it.
	row func(*transform.Mapping, bson.Raw) (*transform.Row, error)
}

func newTablePlan(table string, specs []transform.ColumnSpec) (tablePlan, error) {
	tp := tablePlan{table: table, status: -1}
	for i := range specs {
		c := &specs[i]
		k, err := kindOf(c.Type)
		if err != nil {
			return tp, fmt.Errorf("%s.%s: %w", table, c.Column, err)
		}
		if c.Column == "status" {
			tp.status = len(tp.cols)
		}
		if k == kNumeric {
			tp.money = append(tp.money, len(tp.cols))
		}
		tp.cols = append(tp.cols, colPlan{name: c.Column, kind: k, spec: c})
	}
	return tp, nil
}

func newMappingPlan(m *transform.Mapping) (*mappingPlan, error) {
	p := &mappingPlan{m: m, idCol: m.ID.Column, uuidID: m.ID.Type != "text", row: (*transform.Mapping).Row}
	if m.Delete == "soft" {
		p.soft = m.SoftDeleteColumn
	}
	top, err := newTablePlan(m.Table, m.Columns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Source, err)
	}
	p.top = top
	for _, c := range top.cols {
		if c.kind == kRef && c.spec.Ref.Missing == transform.MissingNull {
			p.nullRefs = true
		}
	}
	for i := range m.Children {
		ch := &m.Children[i]
		tp, err := newTablePlan(ch.Table, ch.Columns)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Source, err)
		}
		p.children = append(p.children, childPlan{tablePlan: tp, spec: ch, parentCol: ch.ParentColumn})
	}
	return p, nil
}

// idArrayType is the SQL array type of the row ids.
func (p *mappingPlan) idArrayType() string {
	if p.uuidID {
		return "uuid[]"
	}
	return "text[]"
}

// liveRow is the SQL condition of a row that is not soft-deleted.
func (p *mappingPlan) liveRow(alias string) string {
	if p.soft == "" {
		return "true"
	}
	return alias + "." + quoteIdent(p.soft) + " IS NULL"
}
