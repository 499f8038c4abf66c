package verify

import (
	"fmt"
	"sort"

	"github.com/shopspring/decimal"
)

// sumKey names one sum: a money column of a table within one status
// ("" when the table has no status column).
type sumKey struct{ table, column, status string }

type sumCell struct {
	mongo, pg         decimal.Decimal
	mongoRows, pgRows int64 // non-NULL values summed
}

// sums accumulates both sides exactly.
type sums struct {
	cells map[sumKey]*sumCell
}

func newSums() *sums { return &sums{cells: map[sumKey]*sumCell{}} }

func (s *sums) cell(k sumKey) *sumCell {
	c := s.cells[k]
	if c == nil {
		c = &sumCell{}
		s.cells[k] = c
	}
	return c
}

// addMongo adds one expected row's money values (canonical decimals). A
// value that is no amount (a marker such as <NaN is not an amount>) is
// left out: the row's document_diff already names it, and the sum then
// differs by it too.
func (s *sums) addMongo(tp *tablePlan, vals []cval) {
	status := ""
	if tp.status >= 0 {
		status = vals[tp.status].String()
	}
	for _, i := range tp.money {
		c := s.cell(sumKey{tp.table, tp.cols[i].name, status})
		if vals[i].null {
			continue
		}
		d, ok := parseDecimal(vals[i].s)
		if !ok {
			continue
		}
		c.mongo = c.mongo.Add(d)
		c.mongoRows++
	}
}

// addPG adds Postgres' sums of one status group.
func (s *sums) addPG(tp *tablePlan, sr sumRow) {
	for j, i := range tp.money {
		c := s.cell(sumKey{tp.table, tp.cols[i].name, sr.status})
		c.pg = c.pg.Add(sr.sums[j])
		c.pgRows += sr.counts[j]
	}
}

// report compares every sum and, per column, the totals over all
// statuses.
func (s *sums) report(ch *Check) {
	keys := make([]sumKey, 0, len(s.cells))
	totals := map[sumKey]*sumCell{}
	for k, c := range s.cells {
		keys = append(keys, k)
		tk := sumKey{k.table, k.column, "*"}
		t := totals[tk]
		if t == nil {
			t = &sumCell{}
			totals[tk] = t
		}
		t.mongo, t.pg = t.mongo.Add(c.mongo), t.pg.Add(c.pg)
		t.mongoRows, t.pgRows = t.mongoRows+c.mongoRows, t.pgRows+c.pgRows
	}
	for k := range totals {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.table != b.table {
			return a.table < b.table
		}
		if a.column != b.column {
			return a.column < b.column
		}
		return a.status < b.status
	})
	var cols int64
	for _, k := range keys {
		c := s.cells[k]
		if k.status == "*" {
			c = totals[k]
			cols++
		}
		ch.Counts["sums"]++
		if c.mongo.Equal(c.pg) && c.mongoRows == c.pgRows {
			continue
		}
		scope := "total"
		if k.status != "*" {
			scope = "status " + k.status
			if k.status == "" {
				continue // the table has no status: its total says it
			}
		}
		ch.mismatch(Example{Table: k.table, Column: k.column, Mongo: c.mongo.String(), Postgres: c.pg.String(),
			Detail: fmt.Sprintf("sum over %s differs by %s (%d values in Mongo, %d in Postgres)", scope, c.pg.Sub(c.mongo).String(), c.mongoRows, c.pgRows)})
	}
	ch.Counts["columns"] = cols
}
