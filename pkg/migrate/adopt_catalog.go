package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// catalog is what the adoption compares of one schema: the objects the
// migrations create in the application's schema, read back from
// PostgreSQL's own catalog (pg_catalog) rather than parsed from SQL, so
// that the comparison sees what PostgreSQL made of the DDL (types as
// format_type prints them, constraints and indexes as pg_get_*def prints
// them).
//
// Every definition is normalized: the schema's name is removed, so the
// shadow schema's copy of a migration and the live public schema compare
// as text.
type catalog struct {
	tables     map[string]*ctable
	enums      map[string]*cenum
	functions  map[string]*cfunc // by "name(identity arguments)"
	extensions map[string]bool
	// relations is every relation name of the schema (tables, indexes,
	// sequences, views): an index or constraint the adoption would create
	// must not take a name already in use.
	relations map[string]bool
}

type ctable struct {
	name     string
	canAlter bool // the current role has its owner's privileges
	owner    string
	cols     []*ccol
	col      map[string]*ccol
	cons     []*ccon
	idx      []*cidx
	trig     []*ctrig
}

type ccol struct {
	name     string
	typ      ctype
	notNull  bool
	def      string // default expression, "" for none
	identity string // "a" (ALWAYS), "d" (BY DEFAULT) or ""
	computed string // "s" for a stored generated column, else ""
}

// ctype is a column's type: display is format_type's text
// ("numeric(38,18)", "character varying(255)", "payment_status"), name the
// pg_type name ("numeric", "varchar", "_text"), kind its typtype ('e' for
// an enum) and mod the type modifier (-1 for none).
type ctype struct {
	display string
	name    string
	kind    string
	mod     int32
}

// numeric returns the precision and scale of a numeric type; ok is false
// for an unconstrained numeric (or another type).
func (t ctype) numeric() (precision, scale int, ok bool) {
	if t.name != "numeric" || t.mod < 4 {
		return 0, 0, false
	}
	m := t.mod - 4
	return int(m>>16) & 0xffff, int(int16(m & 0xffff)), true
}

type ccon struct {
	name string
	kind string // p, u, c or f
	// def is pg_get_constraintdef without a trailing NOT VALID.
	def       string
	validated bool
	cols      []string
	index     string // the index of a p or u constraint
}

type cidx struct {
	name    string
	table   string
	unique  bool
	primary bool
	valid   bool
	partial bool
	exprs   bool
	// constraint is the p/u constraint the index belongs to, "" for a
	// plain index.
	constraint string
	// body is what follows "ON table" in pg_get_indexdef: "USING btree
	// (a, b DESC) WHERE ...", with UNIQUE prefixed for a unique index. Two
	// indexes with the same body are the same index.
	body string
	cols []string
}

type ctrig struct {
	name    string
	def     string
	enabled string // pg_trigger.tgenabled: O, A, R or D
}

type cfunc struct {
	name     string
	args     string
	def      string
	canAlter bool
}

type cenum struct {
	name     string
	labels   []string
	canAlter bool
}

// querier is what reading a catalog needs: a *sql.Tx or *sql.Conn.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// sep separates list elements that come back from the catalog as one
// text (column names, enum labels): a control character no identifier or
// label of these migrations contains.
const sep = "\x1f"

// readCatalog reads schema's objects. rename maps a schema-qualified
// prefix that appears in definitions to its replacement (the schema
// itself to "", so names compare unqualified).
//
// Each section is one catalog query, read in this order; the first that
// fails ends the read.
func readCatalog(ctx context.Context, q querier, schema string, rename map[string]string) (*catalog, error) {
	cr := &catalogReader{ctx: ctx, q: q, schema: schema, rename: rename, c: emptyCatalog()}
	for _, read := range []func() error{
		cr.readTables,
		cr.readRelations,
		cr.readColumns,
		cr.readConstraints,
		cr.readIndexes,
		cr.readTriggers,
		cr.readFunctions,
		cr.readEnums,
		cr.readExtensions,
	} {
		if err := read(); err != nil {
			return nil, err
		}
	}
	return cr.c, nil
}

// catalogReader is what every section of readCatalog shares: the schema
// its queries take as $1, the renames that make definitions compare
// across schemas, and the catalog the sections fill together (a table's
// columns, constraints and indexes come from different queries).
type catalogReader struct {
	ctx    context.Context
	q      querier
	schema string
	rename map[string]string
	c      *catalog
}

// norm removes the schema qualifications rename names, so a shadow
// schema's definitions and the live schema's compare as text.
func (cr *catalogReader) norm(s string) string {
	for from, to := range cr.rename {
		s = strings.ReplaceAll(s, from, to)
	}
	return s
}

// each runs one section's query with the schema as $1 and scans every
// row, so that every section reports its failures the same way.
func (cr *catalogReader) each(what, query string, scan func(*sql.Rows) error) error {
	rows, err := cr.q.QueryContext(cr.ctx, query, cr.schema)
	if err != nil {
		return fmt.Errorf("read %s of schema %s: %w", what, cr.schema, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("read %s of schema %s: %w", what, cr.schema, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s of schema %s: %w", what, cr.schema, err)
	}
	return nil
}

// table returns the named table, creating it on first sight: the
// sections meet a table in whatever order their queries return it.
func (cr *catalogReader) table(name string) *ctable {
	t := cr.c.tables[name]
	if t == nil {
		t = &ctable{name: name, col: map[string]*ccol{}}
		cr.c.tables[name] = t
	}
	return t
}

// readTables records each table's owner and whether the current role can
// alter it, which decides whether an adoption may touch it.
func (cr *catalogReader) readTables() error {
	return cr.each("tables", `
		SELECT c.relname, pg_get_userbyid(c.relowner), pg_has_role(c.relowner, 'USAGE')
		FROM pg_class c
		WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p')`, func(r *sql.Rows) error {
		var name, owner string
		var can bool
		if err := r.Scan(&name, &owner, &can); err != nil {
			return err
		}
		t := cr.table(name)
		t.owner, t.canAlter = owner, can
		return nil
	})
}

// readRelations records every relation name, which a new index or
// constraint must not take.
func (cr *catalogReader) readRelations() error {
	return cr.each("relations", `SELECT relname FROM pg_class WHERE relnamespace = $1::regnamespace`, func(r *sql.Rows) error {
		var name string
		if err := r.Scan(&name); err != nil {
			return err
		}
		cr.c.relations[name] = true
		return nil
	})
}

// readColumns reads the columns in attribute order, the order CREATE
// TABLE gives them.
func (cr *catalogReader) readColumns() error {
	return cr.each("columns", `
		SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typtype::text, a.atttypmod,
		       a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text, a.attgenerated::text
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY c.relname, a.attnum`, func(r *sql.Rows) error {
		var tname string
		col := &ccol{}
		if err := r.Scan(&tname, &col.name, &col.typ.display, &col.typ.name, &col.typ.kind, &col.typ.mod,
			&col.notNull, &col.def, &col.identity, &col.computed); err != nil {
			return err
		}
		col.typ.display, col.def = cr.norm(col.typ.display), cr.norm(col.def)
		t := cr.table(tname)
		t.cols = append(t.cols, col)
		t.col[col.name] = col
		return nil
	})
}

// readConstraints reads primary key, unique, check and foreign key
// constraints; NOT VALID is cut from the definition (validated says it),
// so a constraint compares the same before and after its validation.
func (cr *catalogReader) readConstraints() error {
	return cr.each("constraints", `
		SELECT c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid), con.convalidated,
		       array_to_string(ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
		                             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o), E'\x1f'),
		       CASE WHEN con.contype IN ('p', 'u') THEN coalesce(i.relname, '') ELSE '' END
		FROM pg_constraint con
		JOIN pg_class c ON c.oid = con.conrelid
		LEFT JOIN pg_class i ON i.oid = con.conindid
		WHERE c.relnamespace = $1::regnamespace AND con.contype IN ('p', 'u', 'c', 'f')
		ORDER BY c.relname, con.conname`, func(r *sql.Rows) error {
		var tname, cols string
		k := &ccon{}
		if err := r.Scan(&tname, &k.name, &k.kind, &k.def, &k.validated, &cols, &k.index); err != nil {
			return err
		}
		k.def = strings.TrimSuffix(cr.norm(k.def), " NOT VALID")
		k.cols = split(cols)
		t := cr.table(tname)
		t.cons = append(t.cons, k)
		return nil
	})
}

// readIndexes reads every index with its body (the definition without
// its name and table), by which two indexes compare as the same.
func (cr *catalogReader) readIndexes() error {
	return cr.each("indexes", `
		SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisunique, x.indisprimary, x.indisvalid,
		       x.indpred IS NOT NULL, x.indexprs IS NOT NULL,
		       coalesce((SELECT con.conname FROM pg_constraint con
		                  WHERE con.conindid = x.indexrelid AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x') LIMIT 1), ''),
		       array_to_string(ARRAY(SELECT coalesce(a.attname::text, '') FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, o)
		                             LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), E'\x1f')
		FROM pg_index x
		JOIN pg_class i ON i.oid = x.indexrelid
		JOIN pg_class t ON t.oid = x.indrelid
		WHERE t.relnamespace = $1::regnamespace AND t.relkind IN ('r', 'p')
		ORDER BY t.relname, i.relname`, func(r *sql.Rows) error {
		var tname, def, cols string
		ix := &cidx{}
		if err := r.Scan(&tname, &ix.name, &def, &ix.unique, &ix.primary, &ix.valid, &ix.partial, &ix.exprs, &ix.constraint, &cols); err != nil {
			return err
		}
		ix.table = tname
		ix.cols = split(cols)
		def = cr.norm(def)
		if _, body, ok := strings.Cut(def, " USING "); ok {
			ix.body = "USING " + body
		} else {
			ix.body = def
		}
		if ix.unique {
			ix.body = "UNIQUE " + ix.body
		}
		t := cr.table(tname)
		t.idx = append(t.idx, ix)
		return nil
	})
}

// readTriggers reads the user triggers (not the internal ones PostgreSQL
// makes for foreign keys, which the constraints already stand for).
func (cr *catalogReader) readTriggers() error {
	return cr.each("triggers", `
		SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		WHERE c.relnamespace = $1::regnamespace AND NOT t.tgisinternal
		ORDER BY c.relname, t.tgname`, func(r *sql.Rows) error {
		var tname string
		tg := &ctrig{}
		if err := r.Scan(&tname, &tg.name, &tg.def, &tg.enabled); err != nil {
			return err
		}
		tg.def = cr.norm(tg.def)
		t := cr.table(tname)
		t.trig = append(t.trig, tg)
		return nil
	})
}

// readFunctions reads the schema's functions. Functions and types that
// belong to an extension (pg_trgm's, when it is installed in the schema)
// are the extension's, not the migrations'.
func (cr *catalogReader) readFunctions() error {
	return cr.each("functions", `
		SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid), pg_has_role(p.proowner, 'USAGE')
		FROM pg_proc p
		WHERE p.pronamespace = $1::regnamespace AND p.prokind = 'f'
		  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
		ORDER BY 1, 2`, func(r *sql.Rows) error {
		f := &cfunc{}
		if err := r.Scan(&f.name, &f.args, &f.def, &f.canAlter); err != nil {
			return err
		}
		f.args, f.def = cr.norm(f.args), cr.norm(f.def)
		cr.c.functions[f.name+"("+f.args+")"] = f
		return nil
	})
}

// readEnums reads the enum types with their labels in sort order (the
// order ADD VALUE must keep), leaving out an extension's as
// readFunctions does.
func (cr *catalogReader) readEnums() error {
	return cr.each("enum types", `
		SELECT t.typname, pg_has_role(t.typowner, 'USAGE'),
		       array_to_string(ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder), E'\x1f')
		FROM pg_type t
		WHERE t.typnamespace = $1::regnamespace AND t.typtype = 'e'
		  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
		ORDER BY 1`, func(r *sql.Rows) error {
		e := &cenum{}
		var labels string
		if err := r.Scan(&e.name, &e.canAlter, &labels); err != nil {
			return err
		}
		e.labels = split(labels)
		cr.c.enums[e.name] = e
		return nil
	})
}

// readExtensions reads the database's extensions, whatever schema they
// are in: an extension is database-wide, so its query takes no schema
// and its errors name none.
func (cr *catalogReader) readExtensions() error {
	rows, err := cr.q.QueryContext(cr.ctx, `SELECT extname FROM pg_extension`)
	if err != nil {
		return fmt.Errorf("read extensions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return fmt.Errorf("read extensions: %w", err)
		}
		cr.c.extensions[name] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read extensions: %w", err)
	}
	return nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, sep)
}

// fingerprint is a stable text of everything c holds, to tell whether a
// migration changed the schema at all.
func (c *catalog) fingerprint() string {
	var b strings.Builder
	for _, name := range sortedKeys(c.tables) {
		t := c.tables[name]
		fmt.Fprintf(&b, "table %s\n", name)
		for _, col := range t.cols {
			fmt.Fprintf(&b, " col %s %s %v %q %s%s\n", col.name, col.typ.display, col.notNull, col.def, col.identity, col.computed)
		}
		for _, k := range t.cons {
			fmt.Fprintf(&b, " con %s %s %v\n", k.name, k.def, k.validated)
		}
		for _, ix := range t.idx {
			fmt.Fprintf(&b, " idx %s %s %v\n", ix.name, ix.body, ix.valid)
		}
		for _, tg := range t.trig {
			fmt.Fprintf(&b, " trig %s %s %s\n", tg.name, tg.def, tg.enabled)
		}
	}
	for _, name := range sortedKeys(c.enums) {
		fmt.Fprintf(&b, "enum %s %s\n", name, strings.Join(c.enums[name].labels, ","))
	}
	for _, name := range sortedKeys(c.functions) {
		fmt.Fprintf(&b, "func %s %s\n", name, c.functions[name].def)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (t *ctable) constraint(name string) *ccon {
	for _, k := range t.cons {
		if k.name == name {
			return k
		}
	}
	return nil
}

func (t *ctable) index(name string) *cidx {
	for _, ix := range t.idx {
		if ix.name == name {
			return ix
		}
	}
	return nil
}

func (t *ctable) trigger(name string) *ctrig {
	for _, tg := range t.trig {
		if tg.name == name {
			return tg
		}
	}
	return nil
}

func (t *ctable) primaryKey() *ccon {
	for _, k := range t.cons {
		if k.kind == "p" {
			return k
		}
	}
	return nil
}
