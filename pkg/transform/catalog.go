package transform

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Querier is the part of pgx the catalog check needs.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

type catalogColumn struct {
	dataType   string // information_schema data_type
	udtName    string
	precision  *int32
	scale      *int32
	notNull    bool
	hasDefault bool
}

// CheckCatalog compares every mapping, child tables included, with the
// live Postgres catalog and returns one error (wrapping ErrSchemaMismatch)
// listing each problem with the mapping, the field and the column. A nil
// error means every mapped table and column exists with a type that holds
// what the mapping produces, every enum value maps to an existing label,
// every NOT NULL column without a default is mapped, and every mapped NOT
// NULL column is required or has a default (so a missing value is
// rejected by the transform naming the field, not by Postgres naming
// none).
func CheckCatalog(ctx context.Context, q Querier, set *Set) error {
	var problems []string
	for _, m := range set.Mappings() {
		cols, ok, err := tableColumns(ctx, q, m, m.Table, &problems)
		if err != nil {
			return err
		}
		if ok {
			mapped := map[string]bool{m.ID.Column: true}
			idCol, ok := cols[m.ID.Column]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s: id column %s.%s does not exist", m.Source, m.Table, m.ID.Column))
			case m.ID.Type == "uuid" && idCol.dataType != "uuid":
				problems = append(problems, fmt.Sprintf("%s: id column %s.%s is %s, mapping needs uuid", m.Source, m.Table, m.ID.Column, idCol.dataType))
			case m.ID.Type == "text" && !isTextType(idCol.dataType):
				problems = append(problems, fmt.Sprintf("%s: id column %s.%s is %s, mapping needs text", m.Source, m.Table, m.ID.Column, idCol.dataType))
			}
			if m.Delete == "soft" {
				mapped[m.SoftDeleteColumn] = true
				if c, ok := cols[m.SoftDeleteColumn]; !ok || c.dataType != "timestamp with time zone" {
					problems = append(problems, fmt.Sprintf("%s: soft_delete_column %s.%s must exist as timestamptz", m.Source, m.Table, m.SoftDeleteColumn))
				}
			}
			if err := checkColumns(ctx, q, m, m.Table, "", m.Columns, cols, mapped, &problems); err != nil {
				return err
			}
		}
		for i := range m.Children {
			ch := &m.Children[i]
			cols, ok, err := tableColumns(ctx, q, m, ch.Table, &problems)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			mapped := map[string]bool{ch.ParentColumn: true}
			pc, ok := cols[ch.ParentColumn]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s: child %s: parent_column %s.%s does not exist", m.Source, ch.Field, ch.Table, ch.ParentColumn))
			case m.ID.Type == "uuid" && pc.dataType != "uuid":
				problems = append(problems, fmt.Sprintf("%s: child %s: parent_column %s.%s is %s, the parent id is uuid", m.Source, ch.Field, ch.Table, ch.ParentColumn, pc.dataType))
			case m.ID.Type == "text" && !isTextType(pc.dataType):
				problems = append(problems, fmt.Sprintf("%s: child %s: parent_column %s.%s is %s, the parent id is text", m.Source, ch.Field, ch.Table, ch.ParentColumn, pc.dataType))
			}
			if err := checkColumns(ctx, q, m, ch.Table, ch.Field+".", ch.Columns, cols, mapped, &problems); err != nil {
				return err
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrSchemaMismatch, strings.Join(problems, "\n  "))
	}
	return nil
}

// tableColumns loads a table's columns; ok is false (and a problem
// recorded) when the table does not exist.
func tableColumns(ctx context.Context, q Querier, m *Mapping, qualified string, problems *[]string) (map[string]catalogColumn, bool, error) {
	schema, table := "public", qualified
	if s, t, ok := strings.Cut(qualified, "."); ok {
		schema, table = s, t
	}
	cols, err := loadColumns(ctx, q, schema, table)
	if err != nil {
		return nil, false, fmt.Errorf("transform %s: read catalog of %s: %w", m.Source, qualified, err)
	}
	if len(cols) == 0 {
		*problems = append(*problems, fmt.Sprintf("%s (collection %s): table %s does not exist", m.Source, m.Collection, qualified))
		return nil, false, nil
	}
	return cols, true, nil
}

// checkColumns checks the mapped columns of one table; prefix is the
// child's field path (with a trailing dot) for messages.
func checkColumns(ctx context.Context, q Querier, m *Mapping, table, prefix string, specs []ColumnSpec, cols map[string]catalogColumn, mapped map[string]bool, problems *[]string) error {
	for i := range specs {
		c := &specs[i]
		mapped[c.Column] = true
		field := prefix + c.Field
		if c.Func != "" && c.Field == "" {
			field = prefix + "func:" + c.Func
		}
		where := fmt.Sprintf("%s: field %s -> column %s.%s", m.Source, field, table, c.Column)
		pc, ok := cols[c.Column]
		if !ok {
			*problems = append(*problems, where+": column does not exist")
			continue
		}
		if msg := compatible(c, pc); msg != "" {
			*problems = append(*problems, where+": "+msg)
			continue
		}
		if pc.notNull {
			switch {
			case c.Type == TypeRef && c.Ref.Missing == MissingNull:
				*problems = append(*problems, where+": column is NOT NULL, so ref.missing cannot be null")
			case !c.Required && c.Default == nil && c.kind != fieldIndex:
				*problems = append(*problems, where+": column is NOT NULL; mark the field required (or give a default) so a missing value is rejected naming the field")
			}
		}
		if c.Type == TypeEnum {
			labels, err := enumLabels(ctx, q, pc.udtName)
			if err != nil {
				return fmt.Errorf("transform %s: read enum %s: %w", m.Source, pc.udtName, err)
			}
			froms := make([]string, 0, len(c.Values))
			for from := range c.Values {
				froms = append(froms, from)
			}
			sort.Strings(froms)
			for _, from := range froms {
				if to := c.Values[from]; !labels[to] {
					*problems = append(*problems, fmt.Sprintf("%s: value %q maps to %q, which enum %s does not have", where, from, to, pc.udtName))
				}
			}
		}
	}
	names := make([]string, 0, len(cols))
	for name := range cols {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if pc := cols[name]; !mapped[name] && pc.notNull && !pc.hasDefault {
			*problems = append(*problems, fmt.Sprintf("%s: column %s.%s is NOT NULL without a default and no field maps to it", m.Source, table, name))
		}
	}
	return nil
}

func loadColumns(ctx context.Context, q Querier, schema, table string) (map[string]catalogColumn, error) {
	rows, err := q.Query(ctx, `
		SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale,
		       is_nullable = 'NO', column_default IS NOT NULL OR is_identity = 'YES' OR is_generated = 'ALWAYS'
		FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = $2`, schema, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]catalogColumn{}
	for rows.Next() {
		var name string
		var c catalogColumn
		if err := rows.Scan(&name, &c.dataType, &c.udtName, &c.precision, &c.scale, &c.notNull, &c.hasDefault); err != nil {
			return nil, err
		}
		out[name] = c
	}
	return out, rows.Err()
}

func enumLabels(ctx context.Context, q Querier, typeName string) (map[string]bool, error) {
	rows, err := q.Query(ctx, `SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = $1`, typeName)
	if err != nil {
		return nil, err
	}
	labels, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	if len(labels) == 0 {
		return nil, errors.New("no such enum type")
	}
	out := map[string]bool{}
	for _, l := range labels {
		out[l] = true
	}
	return out, nil
}

func isTextType(dt string) bool {
	return dt == "text" || dt == "character varying" || dt == "character"
}

// compatible says why column pc cannot hold what c produces ("" if it can).
// It is one switch over the column types, a case each: a table by nature,
// kept whole so every type's rule reads next to the others.
func compatible(c *ColumnSpec, pc catalogColumn) string {
	got := pc.dataType
	want := ""
	switch c.Type {
	case TypeText, TypeObjectID:
		if isTextType(got) {
			return ""
		}
		want = "text"
	case TypeBool:
		if got == "boolean" {
			return ""
		}
		want = "boolean"
	case TypeSmallint:
		if got == "smallint" || got == "integer" || got == "bigint" {
			return ""
		}
		want = "smallint, integer or bigint"
	case TypeInt:
		if got == "integer" || got == "bigint" {
			return ""
		}
		want = "integer or bigint"
	case TypeBigint:
		if got == "bigint" {
			return ""
		}
		want = "bigint"
	case TypeNumeric:
		if got != "numeric" {
			want = "numeric"
			break
		}
		if pc.precision == nil || pc.scale == nil {
			return "" // unconstrained numeric holds anything exactly
		}
		p, s := int(*pc.precision), int(*pc.scale)
		if s < c.decimal.Scale || p-s < c.decimal.Precision-c.decimal.Scale {
			return fmt.Sprintf("column is numeric(%d,%d), which cannot hold every numeric(%d,%d) value exactly", p, s, c.decimal.Precision, c.decimal.Scale)
		}
		return ""
	case TypeFloat8:
		if got == "double precision" {
			return ""
		}
		want = "double precision"
	case TypeTimestamptz:
		if got == "timestamp with time zone" {
			return ""
		}
		want = "timestamp with time zone"
	case TypeJSONB:
		if got == "jsonb" {
			return ""
		}
		want = "jsonb"
	case TypeTextArray:
		if got == "ARRAY" && pc.udtName == "_text" {
			return ""
		}
		want = "text[]"
	case TypeRef:
		if got == "uuid" {
			return ""
		}
		want = "uuid"
	case TypeEnum:
		if got == "USER-DEFINED" && (c.EnumType == "" || c.EnumType == pc.udtName) {
			return ""
		}
		want = "an enum type"
		if c.EnumType != "" {
			want = "enum " + c.EnumType
		}
	}
	if got == "USER-DEFINED" || got == "ARRAY" {
		got = got + " (" + pc.udtName + ")"
	}
	return fmt.Sprintf("column is %s, mapping type %s needs %s", got, c.Type, want)
}
