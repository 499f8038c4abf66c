package migrate

import (
	"fmt"
	"regexp"
	"strings"
)

// The phases of an adoption, in the order their steps run: whatever a
// later step needs (a type, a function, a NOT NULL column under a primary
// key, a table a foreign key references) exists by then.
const (
	phaseExtensions = iota
	phaseTypes
	phaseFunctions
	phaseTables
	phaseColumns
	phaseKeys
	phaseChecks
	phaseForeignKeys
	phaseIndexes
	phaseTriggers
	phaseCount
)

// differ compares the application schema the migrations would have made
// (want) with the live one and collects the steps that bring the live
// schema to want, the differences that cannot be bridged safely, and notes
// on what stays as it is.
type differ struct {
	want  *catalog // the schema after the adopted migrations
	final *catalog // the schema after every migration
	live  *catalog
	// needs is what the mappings write: table -> column -> true.
	needs map[string]map[string]bool
	widen bool
	role  string
	// later is the SQL of the migrations that run after the adoption: an
	// object they name that the application has under another name is
	// renamed to the migrations' name, so that they find it.
	later string

	steps [phaseCount][]Step
	diffs []Difference
	notes []string
	kept  map[string][]string
}

func (d *differ) step(phase int, s Step) {
	d.steps[phase] = append(d.steps[phase], s)
}

func (d *differ) refuse(kind DifferenceKind, object, reason string) {
	d.diffs = append(d.diffs, Difference{Kind: kind, Object: object, Reason: reason})
}

func (d *differ) note(format string, args ...any) {
	d.notes = append(d.notes, fmt.Sprintf(format, args...))
}

// keep groups the objects that stay as they are for one reason (the id
// columns of every table keeping the application's gen_random_uuid()).
func (d *differ) keep(why, object string) {
	if d.kept == nil {
		d.kept = map[string][]string{}
	}
	d.kept[why] = append(d.kept[why], object)
}

var numericLiteral = regexp.MustCompile(`^'(-?[0-9]+(?:\.[0-9]+)?)'::numeric$`)

// sameDefault compares default expressions, taking '0'::numeric (how
// Drizzle writes a numeric default) and 0 as the same.
func sameDefault(a, b string) bool {
	norm := func(s string) string { return numericLiteral.ReplaceAllString(s, "$1") }
	return norm(a) == norm(b)
}

// referenced reports whether a later migration names name.
func (d *differ) referenced(name string) bool {
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`).MatchString(d.later)
}

// renameConstraint renames the application's equivalent of a constraint
// to the migrations' name when a later migration refers to it by that
// name; it returns the name the constraint has once the step ran.
func (d *differ) renameConstraint(phase int, table string, have, want *ccon) string {
	if have.name == want.name || !d.referenced(want.name) {
		return have.name
	}
	if (want.kind == "p" || want.kind == "u") && d.live.relations[want.name] {
		d.refuse(DiffConflict, table+"."+want.name, fmt.Sprintf("a later migration names %s, the application's equivalent is %s, and another relation has the name", want.name, have.name))
		return have.name
	}
	d.step(phase, Step{
		Table:    table,
		Summary:  fmt.Sprintf("rename the application's constraint %s on %s to %s (it is the migrations' %s, and a later migration names it)", have.name, table, want.name, want.name),
		SQL:      []string{fmt.Sprintf("ALTER TABLE %s RENAME CONSTRAINT %s TO %s", quoteIdent(table), quoteIdent(have.name), quoteIdent(want.name))},
		Blocking: true,
	})
	return want.name
}

// run fills steps, diffs and notes.
func (d *differ) run() {
	d.extensions()
	d.enums()
	d.functions()
	for _, name := range sortedKeys(d.want.tables) {
		wt := d.want.tables[name]
		lt := d.live.tables[name]
		if lt == nil {
			d.createTable(wt)
			continue
		}
		d.columns(wt, lt)
		d.keys(wt, lt)
		d.checks(wt, lt)
		d.extraUniqueIndexes(wt, lt)
	}
	for _, name := range sortedKeys(d.want.tables) {
		d.foreignKeys(d.want.tables[name], d.live.tables[name])
	}
	for _, name := range sortedKeys(d.want.tables) {
		d.indexes(d.want.tables[name], d.live.tables[name])
	}
	for _, name := range sortedKeys(d.want.tables) {
		d.triggers(d.want.tables[name], d.live.tables[name])
	}
	d.mappings()
	for _, why := range sortedKeys(d.kept) {
		d.notes = append(d.notes, strings.Replace(why, "{objects}", strings.Join(d.kept[why], ", "), 1))
	}
	// Every table the migrations create that the application already has
	// is theirs from now on: this adoption alters it, and so will later
	// migrations.
	for _, name := range sortedKeys(d.want.tables) {
		if lt := d.live.tables[name]; lt != nil && !lt.canAlter {
			d.refuse(DiffOwner, "table "+name, fmt.Sprintf("owned by %s; role %s does not have its privileges, so it cannot alter the table (run cdc migrate as %s, or GRANT %s TO %s for the adoption)",
				lt.owner, d.role, lt.owner, quoteIdent(lt.owner), quoteIdent(d.role)))
		}
	}
}

// steps in run order.
func (d *differ) ordered() []Step {
	var out []Step
	for _, ph := range d.steps {
		out = append(out, ph...)
	}
	return out
}

func (d *differ) extensions() {
	for _, name := range sortedKeys(d.want.extensions) {
		if !d.live.extensions[name] {
			d.step(phaseExtensions, Step{
				Summary: "create extension " + name,
				SQL:     []string{"CREATE EXTENSION IF NOT EXISTS " + quoteIdent(name)},
			})
		}
	}
}

func (d *differ) enums() {
	for _, name := range sortedKeys(d.want.enums) {
		we := d.want.enums[name]
		le := d.live.enums[name]
		if le == nil {
			if d.live.relations[name] {
				d.refuse(DiffConflict, "type "+name, "the migrations create enum "+name+", and a relation of that name exists (its row type takes the name)")
				continue
			}
			lits := make([]string, len(we.labels))
			for i, l := range we.labels {
				lits[i] = quoteLiteral(l)
			}
			d.step(phaseTypes, Step{
				Summary: "create enum type " + name,
				SQL:     []string{fmt.Sprintf("CREATE TYPE %s AS ENUM (%s)", quoteIdent(name), strings.Join(lits, ", "))},
			})
			continue
		}
		have := map[string]bool{}
		for _, l := range le.labels {
			have[l] = true
		}
		var missing []string
		for i, l := range we.labels {
			if have[l] {
				continue
			}
			missing = append(missing, l)
			// Keep the migrations' order where it can be kept: after the
			// nearest earlier label the type has, else before the first.
			pos := ""
			for j := i - 1; j >= 0; j-- {
				if have[we.labels[j]] {
					pos = " AFTER " + quoteLiteral(we.labels[j])
					break
				}
			}
			if pos == "" && len(le.labels) > 0 {
				pos = " BEFORE " + quoteLiteral(le.labels[0])
			}
			have[l] = true
			d.step(phaseTypes, Step{
				Summary:  fmt.Sprintf("add value %s to enum %s", quoteLiteral(l), name),
				SQL:      []string{fmt.Sprintf("ALTER TYPE %s ADD VALUE IF NOT EXISTS %s%s", quoteIdent(name), quoteLiteral(l), pos)},
				Blocking: true,
			})
		}
		if len(missing) > 0 && !le.canAlter {
			d.refuse(DiffOwner, "type "+name, fmt.Sprintf("role %s does not have the privileges of the type's owner, so it cannot add %s", d.role, strings.Join(missing, ", ")))
		}
		var extra []string
		want := map[string]bool{}
		for _, l := range we.labels {
			want[l] = true
		}
		for _, l := range le.labels {
			if !want[l] {
				extra = append(extra, l)
			}
		}
		if len(extra) > 0 {
			d.note("enum %s keeps the application's values %s, which the migrations do not create", name, strings.Join(quoteAll(extra), ", "))
		}
	}
}

func (d *differ) functions() {
	for _, key := range sortedKeys(d.want.functions) {
		wf := d.want.functions[key]
		lf := d.live.functions[key]
		switch {
		case lf == nil:
			d.step(phaseFunctions, Step{Summary: "create function " + key, SQL: []string{strings.TrimSpace(wf.def)}})
		case lf.def != wf.def:
			if !lf.canAlter {
				d.refuse(DiffOwner, "function "+key, fmt.Sprintf("differs from the migrations' and role %s does not have its owner's privileges to replace it", d.role))
				continue
			}
			d.step(phaseFunctions, Step{Summary: "replace function " + key + " with the migrations' version (the application's body differs)", SQL: []string{strings.TrimSpace(wf.def)}})
		}
	}
}

var nextval = regexp.MustCompile(`^nextval\('[^']+'::regclass\)$`)

// columnDDL is a column definition as CREATE TABLE and ADD COLUMN take it.
func columnDDL(c *ccol) string {
	typ := c.typ.display
	def := c.def
	if nextval.MatchString(def) && (c.typ.name == "int4" || c.typ.name == "int8") {
		typ, def = map[string]string{"int4": "serial", "int8": "bigserial"}[c.typ.name], ""
	}
	s := quoteIdent(c.name) + " " + typ
	switch c.identity {
	case "a":
		s += " GENERATED ALWAYS AS IDENTITY"
	case "d":
		s += " GENERATED BY DEFAULT AS IDENTITY"
	}
	if c.computed == "s" {
		s += " GENERATED ALWAYS AS (" + def + ") STORED"
		def = ""
	}
	if c.notNull && c.identity == "" {
		s += " NOT NULL"
	}
	if def != "" {
		s += " DEFAULT " + def
	}
	return s
}

// createTable creates a table the application does not have, with its
// primary key, unique and check constraints inline (it is empty); its
// foreign keys, indexes and triggers follow in their phases.
func (d *differ) createTable(wt *ctable) {
	if d.live.relations[wt.name] {
		d.refuse(DiffConflict, "table "+wt.name, "the migrations create this table, and another relation (a view, an index, a sequence) has its name")
		return
	}
	lines := make([]string, 0, len(wt.cols)+len(wt.cons))
	for _, c := range wt.cols {
		lines = append(lines, "    "+columnDDL(c))
	}
	for _, k := range wt.cons {
		if k.kind == "f" {
			continue
		}
		lines = append(lines, "    CONSTRAINT "+quoteIdent(k.name)+" "+k.def)
	}
	d.step(phaseTables, Step{
		Table:   wt.name,
		Summary: "create table " + wt.name + " (the application does not have it)",
		SQL:     []string{"CREATE TABLE " + quoteIdent(wt.name) + " (\n" + strings.Join(lines, ",\n") + "\n)"},
	})
}

// notNullCheck names the temporary CHECK (c IS NOT NULL) that lets SET
// NOT NULL skip its full-table scan.
func notNullCheck(col string) string {
	return truncIdent("cdc_adopt_" + col + "_not_null")
}

// columns brings each of wt's columns on the application's table lt to
// the migrations' definition (type, default, NULL), and refuses the
// application's columns the replicator could never fill.
func (d *differ) columns(wt, lt *ctable) {
	for _, wc := range wt.cols {
		lc := lt.col[wc.name]
		if lc == nil {
			d.missingColumn(wt.name, wc)
			continue
		}
		d.columnType(wt.name, wc, lc)
		d.columnDefault(wt.name, wc, lc)
		d.columnNullability(lt, wt.name, wc, lc)
	}
	d.unwritableColumns(wt, lt)
}

// missingColumn adds a column the migrations create and the application
// lacks, unless adding it to a table with rows cannot be done safely or a
// mapping writes it (then the application likely has it under another
// name, which adding the column would hide).
func (d *differ) missingColumn(table string, wc *ccol) {
	obj := table + "." + wc.name
	switch {
	case d.needs[table][wc.name]:
		d.refuse(DiffMissingColumn, obj, "a mapping writes this column and the application's table has no such column (does the application keep the value under another name?); add the column or map the field to the existing one")
	case wc.notNull && wc.def == "" && wc.identity == "":
		d.refuse(DiffMissingColumn, obj, "the migrations create it NOT NULL without a default, which cannot be added to a table that has rows; add it by hand")
	case nextval.MatchString(wc.def):
		d.refuse(DiffMissingColumn, obj, "the migrations create it with a sequence ("+wc.def+"); add it by hand")
	default:
		d.step(phaseColumns, Step{
			Table:    table,
			Summary:  "add column " + obj + " (the migrations create it; no mapping writes it)",
			SQL:      []string{"ALTER TABLE " + quoteIdent(table) + " ADD COLUMN " + columnDDL(wc)},
			Blocking: true,
		})
	}
}

// columnDefault sets the migrations' default where the application has
// none; a default the application has stays (its writers rely on it) and
// is noted.
func (d *differ) columnDefault(table string, wc, lc *ccol) {
	obj := table + "." + wc.name
	serial := nextval.MatchString(wc.def)
	switch {
	case wc.def != "" && lc.def == "" && !serial && lc.identity == "" && lc.computed == "":
		d.step(phaseColumns, Step{
			Table:    table,
			Summary:  "set the default of " + obj + " to " + wc.def,
			SQL:      []string{"ALTER TABLE " + quoteIdent(table) + " ALTER COLUMN " + quoteIdent(wc.name) + " SET DEFAULT " + wc.def},
			Blocking: true,
		})
	case sameDefault(wc.def, lc.def) || lc.def == "" || serial:
	case wc.def == "":
		d.keep(fmt.Sprintf("the application's default %s stays on {objects} (the migrations set none)", lc.def), obj)
	default:
		d.keep(fmt.Sprintf("the application's default %s stays on {objects} (the migrations' is %s)", lc.def, wc.def), obj)
	}
}

// columnNullability makes the column NOT NULL or NULL as the migrations
// have it, leaving NOT NULL on a primary key column (which cannot drop
// it).
func (d *differ) columnNullability(lt *ctable, table string, wc, lc *ccol) {
	switch {
	case wc.notNull && !lc.notNull:
		d.setNotNull(lt, table, wc)
	case !wc.notNull && lc.notNull && !lt.primaryKeyHas(wc.name):
		d.step(phaseColumns, Step{
			Table:    table,
			Summary:  "drop NOT NULL from " + table + "." + wc.name + " (the migrations allow NULL: a document without the field is stored, not refused)",
			SQL:      []string{"ALTER TABLE " + quoteIdent(table) + " ALTER COLUMN " + quoteIdent(wc.name) + " DROP NOT NULL"},
			Blocking: true,
		})
	}
}

// setNotNull makes a column NOT NULL in three steps so that no step holds
// a lock through a table scan: a NOT VALID CHECK, its validation (which
// scans without blocking writes), then SET NOT NULL, which the validated
// CHECK spares its scan. A CHECK left by an interrupted adoption is
// picked up where it stopped.
func (d *differ) setNotNull(lt *ctable, table string, wc *ccol) {
	t, obj := quoteIdent(table), table+"."+wc.name
	ck := notNullCheck(wc.name)
	existing := lt.constraint(ck)
	if existing == nil {
		d.step(phaseColumns, Step{
			Table:    table,
			Summary:  "make " + obj + " NOT NULL, 1/3: CHECK (" + wc.name + " IS NOT NULL) NOT VALID (new rows are checked from now on)",
			SQL:      []string{fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID", t, quoteIdent(ck), quoteIdent(wc.name))},
			Blocking: true,
		})
	}
	if existing == nil || !existing.validated {
		d.step(phaseColumns, Step{
			Table:   table,
			Summary: "make " + obj + " NOT NULL, 2/3: validate the CHECK (scans the rows; reads and writes continue)",
			SQL:     []string{fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", t, quoteIdent(ck))},
		})
	}
	d.step(phaseColumns, Step{
		Table:   table,
		Summary: "make " + obj + " NOT NULL, 3/3: SET NOT NULL (no scan: the validated CHECK proves it) and drop the CHECK",
		SQL: []string{
			fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL", t, quoteIdent(wc.name)),
			fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", t, quoteIdent(ck)),
		},
		OneTx:    true,
		Blocking: true,
	})
}

// unwritableColumns refuses, on a table a mapping writes, an application
// column that is NOT NULL without a default and that neither the
// migrations nor a mapping fill: every insert of the replicator would
// fail on it.
func (d *differ) unwritableColumns(wt, lt *ctable) {
	if d.needs[wt.name] != nil {
		for _, lc := range lt.cols {
			if wt.col[lc.name] == nil && !d.needs[wt.name][lc.name] && lc.notNull && lc.def == "" && lc.identity == "" && lc.computed == "" {
				d.refuse(DiffUnwritable, wt.name+"."+lc.name, "NOT NULL without a default, and neither the migrations nor a mapping write it: every row the replicator inserts would be refused")
			}
		}
	}
}

func (t *ctable) primaryKeyHas(col string) bool {
	pk := t.primaryKey()
	if pk == nil {
		return false
	}
	for _, c := range pk.cols {
		if c == col {
			return true
		}
	}
	return false
}

// mappings refuses tables a mapping writes that nothing provides.
func (d *differ) mappings() {
	for _, table := range sortedKeys(d.needs) {
		if d.live.tables[table] != nil || d.want.tables[table] != nil {
			continue
		}
		if d.final.tables[table] != nil {
			continue // a later migration creates it
		}
		d.refuse(DiffMissingTable, "table "+table, "a mapping writes this table; the application does not have it and no migration creates it")
	}
	for _, table := range sortedKeys(d.needs) {
		lt := d.live.tables[table]
		if lt == nil || d.want.tables[table] != nil {
			continue // created by the plan, or compared column by column above
		}
		ft := d.final.tables[table]
		for _, col := range sortedKeys(d.needs[table]) {
			if lt.col[col] == nil && (ft == nil || ft.col[col] == nil) {
				d.refuse(DiffMissingColumn, table+"."+col, "a mapping writes this column and the application's table has no such column")
			}
		}
	}
}
