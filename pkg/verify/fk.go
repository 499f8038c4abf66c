package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/amanat/cdc/pkg/transform"
)

// fkCheck checks that every reference column of the mapping's table and
// child tables, and every child's parent column, points at an existing
// row (NULL passes: a NULL the document does not explain is a
// document_diff). Every offending row is counted; there is no LIMIT.
func (v *Verifier) fkCheck(ctx context.Context, plan *mappingPlan, ch *Check) error {
	return v.recheckable(ctx, ch, func(ctx context.Context, ch *Check) error {
		ch.Counts["dangling"] = 0
		ctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
		defer cancel()
		t := quoteTable(plan.top.table)
		key := "''"
		from := t + " t"
		if plan.uuidID {
			key = "coalesce(m.legacy_object_id, '')"
			from += fmt.Sprintf(" LEFT JOIN id_map m ON m.collection = $1 AND m.new_id = t.%s", quoteIdent(plan.idCol))
		} else {
			key = "t." + quoteIdent(plan.idCol) + "::text"
		}
		for _, c := range plan.top.cols {
			if c.kind != kRef {
				continue
			}
			sql := fmt.Sprintf("SELECT %s, t.%s::text, t.%s::text FROM %s WHERE t.%s IS NOT NULL AND NOT (%s)",
				key, quoteIdent(plan.idCol), quoteIdent(c.name), from, quoteIdent(c.name), v.parentExists("t."+quoteIdent(c.name), c.spec.Ref))
			if err := v.fkQuery(ctx, ch, sql, plan.m.Collection, plan.top.table, c.name, c.spec.Ref.Collection); err != nil {
				return err
			}
		}
		for i := range plan.children {
			cp := &plan.children[i]
			ct := quoteTable(cp.table)
			pc := "c." + quoteIdent(cp.parentCol)
			ckey := "''"
			cfrom := ct + " c"
			if plan.uuidID {
				ckey = "coalesce(m.legacy_object_id, '')"
				cfrom += " LEFT JOIN id_map m ON m.collection = $1 AND m.new_id = " + pc
			} else {
				ckey = pc + "::text"
			}
			sql := fmt.Sprintf("SELECT %s, %s::text, %s::text FROM %s WHERE NOT EXISTS (SELECT 1 FROM %s p WHERE p.%s = %s)",
				ckey, pc, pc, cfrom, t, quoteIdent(plan.idCol), pc)
			if err := v.fkQuery(ctx, ch, sql, plan.m.Collection, cp.table, cp.parentCol, plan.m.Collection); err != nil {
				return err
			}
			for _, c := range cp.cols {
				if c.kind != kRef {
					continue
				}
				col := "c." + quoteIdent(c.name)
				sql := fmt.Sprintf("SELECT %s, %s::text, %s::text FROM %s WHERE %s IS NOT NULL AND NOT (%s)",
					ckey, pc, col, cfrom, col, v.parentExists(col, c.spec.Ref))
				if err := v.fkQuery(ctx, ch, sql, plan.m.Collection, cp.table, c.name, c.spec.Ref.Collection); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// parentExists is the SQL condition that the uuid in expr is a row of the
// referenced collection's table, or (a collection no mapping replicates,
// such as a sub-document's own id) an id_map entry of it.
func (v *Verifier) parentExists(expr string, ref *transform.RefSpec) string {
	if pp, ok := v.plans[ref.Collection]; ok && pp.uuidID {
		return fmt.Sprintf("EXISTS (SELECT 1 FROM %s p WHERE p.%s = %s)", quoteTable(pp.top.table), quoteIdent(pp.idCol), expr)
	}
	return fmt.Sprintf("EXISTS (SELECT 1 FROM id_map x WHERE x.new_id = %s AND x.collection = %s)", expr, quoteLiteral(ref.Collection))
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// fkQuery streams the offending rows of one column into ch.
func (v *Verifier) fkQuery(ctx context.Context, ch *Check, sql, coll, table, column, refColl string) error {
	ch.Counts["columns"]++
	var args []any
	if strings.Contains(sql, "$1") {
		args = append(args, coll)
	}
	rows, err := v.pg.pool.Query(ctx, sql, args...)
	if err != nil {
		return pgErr(fmt.Sprintf("check references %s.%s", table, column), err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, rowID, val string
		if err := rows.Scan(&key, &rowID, &val); err != nil {
			return pgErr(fmt.Sprintf("check references %s.%s", table, column), err)
		}
		ch.Counts["dangling"]++
		ch.mismatch(Example{ID: key, PGID: rowID, Table: table, Column: column, Postgres: val,
			Detail: fmt.Sprintf("references %s, which has no row in %s", val, refColl)})
	}
	return pgErr(fmt.Sprintf("check references %s.%s", table, column), rows.Err())
}
