package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// appliedVersions returns the versions goose recorded, nil when there is
// no version table.
func appliedVersions(ctx context.Context, q querier) (map[int64]bool, error) {
	rows, err := q.QueryContext(ctx, "SELECT to_regclass($1) IS NOT NULL", VersionTable)
	if err != nil {
		return nil, err
	}
	var exists bool
	for rows.Next() {
		if err := rows.Scan(&exists); err != nil {
			rows.Close()
			return nil, err
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !exists {
		return nil, nil
	}
	rows, err = q.QueryContext(ctx, "SELECT DISTINCT version_id FROM "+VersionTable+" WHERE is_applied AND version_id > 0")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out[v] = true
	}
	return out, rows.Err()
}

// plan works out what Up does. It runs the shadow only when there is
// something to adopt from: pending migrations and an application schema
// with tables or enum types.
func plan(ctx context.Context, conn *sql.Conn, opts AdoptOptions) (*Plan, error) {
	pl, err := pendingPlan(ctx, conn)
	if err != nil {
		return nil, err
	}
	if len(pl.Migrations) == 0 {
		pl.Reason = "the schema is up to date"
		return pl, nil
	}
	hasApp, err := hasAppSchema(ctx, conn)
	if err != nil {
		return nil, err
	}
	if !hasApp {
		pl.Reason = "the application's schema has no tables"
		return pl, nil
	}
	runs, err := shadow(ctx, conn)
	if err != nil {
		return nil, err
	}
	live, err := readCatalog(ctx, conn, "public", map[string]string{"public.": ""})
	if err != nil {
		return nil, err
	}
	overlaps, through, conflict := pendingOverlaps(pl.Migrations, runs, live)
	if conflict == "" {
		pl.Reason = "the existing objects are upgraded in place by their migrations"
		if len(overlaps) == 0 {
			pl.Reason = "no pending migration creates an object the database has"
		}
		return pl, nil
	}
	pl.Adopt, pl.Through = true, through
	pl.Reason = fmt.Sprintf("the database has objects that pending migrations create (the first that would fail on them is %s)", conflict)
	want, final := adoptedCatalogs(runs, through)
	var role string
	if err := conn.QueryRowContext(ctx, "SELECT current_user").Scan(&role); err != nil {
		return nil, fmt.Errorf("read current_user: %w", err)
	}
	d := &differ{want: want, final: final, live: live, widen: opts.Widen, role: role, later: laterSQL(runs, through), needs: mappedNeeds(opts)}
	d.run()
	pl.Steps, pl.Notes = d.ordered(), d.notes
	explainAdopted(pl, d, runs, overlaps)
	pl.Differences = sortedDiffs(d.diffs)
	return pl, nil
}

// pendingPlan starts the plan with every embedded migration goose has not
// recorded, each to be applied until the adoption decides otherwise.
func pendingPlan(ctx context.Context, conn *sql.Conn) (*Plan, error) {
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", VersionTable, err)
	}
	srcs, err := sources()
	if err != nil {
		return nil, err
	}
	pl := &Plan{}
	for _, s := range srcs {
		if !applied[s.version] {
			pl.Migrations = append(pl.Migrations, PlannedMigration{Version: s.version, Name: s.name, Action: ActionApply})
		}
	}
	return pl, nil
}

// hasAppSchema reports whether public has a table or an enum type: without
// one there is nothing to adopt, and the shadow run is skipped.
func hasAppSchema(ctx context.Context, conn *sql.Conn) (bool, error) {
	var hasApp bool
	if err := conn.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = to_regnamespace('public') AND relkind IN ('r', 'p'))
		OR EXISTS (SELECT 1 FROM pg_type WHERE typnamespace = to_regnamespace('public') AND typtype = 'e')`).Scan(&hasApp); err != nil {
		return false, fmt.Errorf("look for existing tables: %w", err)
	}
	return hasApp, nil
}

// pendingOverlaps finds, for each pending migration, the objects it
// creates that the live schema already has. through is the last such
// migration (the adoption covers every migration up to it); conflict is
// the first of them that cannot run a second time, "" when every one can
// (they upgrade in place, and no adoption is needed).
func pendingOverlaps(pending []PlannedMigration, runs []shadowStep, live *catalog) (overlaps map[int64][]string, through int64, conflict string) {
	isPending := map[int64]bool{}
	for _, m := range pending {
		isPending[m.Version] = true
	}
	overlaps = map[int64][]string{}
	prev := emptyCatalog()
	for _, r := range runs {
		if isPending[r.version] {
			if ov := overlap(created(prev, r.after), live); len(ov) > 0 {
				overlaps[r.version] = ov
				through = r.version
				if !r.rerunnable && conflict == "" {
					conflict = r.name
				}
			}
		}
		prev = r.after
	}
	return overlaps, through, conflict
}

// adoptedCatalogs returns the schema as the adopted migrations leave it
// (want, what the adoption brings the live schema to) and as every
// migration leaves it (final, which tells whether a later one creates
// what a mapping needs).
func adoptedCatalogs(runs []shadowStep, through int64) (want, final *catalog) {
	for _, r := range runs {
		if r.version == through {
			want = r.after
		}
		final = r.after
	}
	return want, final
}

// laterSQL is the Up SQL of the migrations after through, in which the
// differ looks for names a later migration relies on.
func laterSQL(runs []shadowStep, through int64) string {
	var later strings.Builder
	for _, r := range runs {
		if r.version > through {
			later.WriteString(r.up)
			later.WriteString("\n")
		}
	}
	return later.String()
}

// mappedNeeds is the columns the mappings write, as the differ looks them
// up: table -> column -> true (empty without mappings).
func mappedNeeds(opts AdoptOptions) map[string]map[string]bool {
	needs := map[string]map[string]bool{}
	if opts.Mappings != nil {
		for table, cols := range MappedColumns(opts.Mappings) {
			needs[table] = map[string]bool{}
			for _, c := range cols {
				needs[table][c] = true
			}
		}
	}
	return needs
}

// explainAdopted decides, for every migration the adoption covers, whether
// it runs or is recorded without running, and says why; a migration that
// changes both schemas can do neither and is refused through d.
func explainAdopted(pl *Plan, d *differ, runs []shadowStep, overlaps map[int64][]string) {
	byVersion := map[int64]shadowStep{}
	for _, r := range runs {
		byVersion[r.version] = r
	}
	for i := range pl.Migrations {
		m := &pl.Migrations[i]
		if m.Version > pl.Through {
			continue
		}
		r := byVersion[m.Version]
		switch {
		case !r.appChanged && r.cdcChanged:
			m.Why = "changes only the replicator's schema cdc"
		case !r.appChanged:
			m.Why = "changes no table definition: runs as usual"
		case r.cdcChanged:
			d.refuse(DiffMigration, "migration "+m.Name, "changes both the application's tables and schema cdc, so it can neither run (its tables exist) nor be recorded without running (its cdc part would be missing)")
		default:
			m.Action = ActionRecord
			if ov := overlaps[m.Version]; len(ov) > 0 {
				m.Why = "the database has " + summarize(ov)
			} else {
				m.Why = "its objects are created by the steps above"
			}
		}
	}
}

func emptyCatalog() *catalog {
	return &catalog{tables: map[string]*ctable{}, enums: map[string]*cenum{}, functions: map[string]*cfunc{}, extensions: map[string]bool{}, relations: map[string]bool{}}
}

// object is something a migration creates in the application's schema.
type object struct {
	kind  string // table, column, constraint, index, trigger, function, type, label
	table string
	name  string
	con   *ccon
	idx   *cidx
}

func (o object) String() string {
	switch o.kind {
	case "column":
		return "column " + o.table + "." + o.name
	case "constraint", "trigger":
		return o.kind + " " + o.name + " on " + o.table
	case "label":
		return "enum value " + o.table + "." + o.name
	}
	return o.kind + " " + o.name
}

// created lists what next has that prev had not.
func created(prev, next *catalog) []object {
	var out []object
	for _, name := range sortedKeys(next.enums) {
		pe := prev.enums[name]
		if pe == nil {
			out = append(out, object{kind: "type", name: name})
			continue
		}
		had := map[string]bool{}
		for _, l := range pe.labels {
			had[l] = true
		}
		for _, l := range next.enums[name].labels {
			if !had[l] {
				out = append(out, object{kind: "label", table: name, name: l})
			}
		}
	}
	for _, key := range sortedKeys(next.functions) {
		if prev.functions[key] == nil {
			out = append(out, object{kind: "function", name: key})
		}
	}
	prevIdx := map[string]bool{}
	for _, t := range prev.tables {
		for _, ix := range t.idx {
			prevIdx[ix.name] = true
		}
	}
	for _, name := range sortedKeys(next.tables) {
		nt, pt := next.tables[name], prev.tables[name]
		if pt == nil {
			out = append(out, object{kind: "table", name: name})
			pt = &ctable{col: map[string]*ccol{}}
		} else {
			for _, c := range nt.cols {
				if pt.col[c.name] == nil {
					out = append(out, object{kind: "column", table: name, name: c.name})
				}
			}
		}
		for _, k := range nt.cons {
			if pt.constraint(k.name) == nil {
				out = append(out, object{kind: "constraint", table: name, name: k.name, con: k})
			}
		}
		for _, ix := range nt.idx {
			if !prevIdx[ix.name] && ix.constraint == "" {
				out = append(out, object{kind: "index", table: name, name: ix.name, idx: ix})
			}
		}
		for _, tg := range nt.trig {
			if pt.trigger(tg.name) == nil {
				out = append(out, object{kind: "trigger", table: name, name: tg.name})
			}
		}
	}
	return out
}

// overlap lists the objects of objs the live schema already has, by name
// or, for constraints and indexes, by definition.
func overlap(objs []object, live *catalog) []string {
	var out []string
	for _, o := range objs {
		lt := live.tables[o.table]
		has := false
		switch o.kind {
		case "type":
			has = live.enums[o.name] != nil
		case "label":
			if le := live.enums[o.table]; le != nil {
				for _, l := range le.labels {
					has = has || l == o.name
				}
			}
		case "function":
			has = live.functions[o.name] != nil
		case "table":
			has = live.tables[o.name] != nil
		case "column":
			has = lt != nil && lt.col[o.name] != nil
		case "constraint":
			if lt != nil {
				for _, k := range lt.cons {
					same := k.kind == o.con.kind && (k.def == o.con.def || o.con.kind == "f" && fkCore(k.def) == fkCore(o.con.def) ||
						(o.con.kind == "p" || o.con.kind == "u") && equal(k.cols, o.con.cols))
					has = has || k.name == o.name || same
				}
			}
		case "index":
			has = live.relations[o.name]
			if lt != nil {
				for _, ix := range lt.idx {
					has = has || ix.valid && ix.body == o.idx.body
				}
			}
		case "trigger":
			has = lt != nil && lt.trigger(o.name) != nil
		}
		if has {
			out = append(out, o.String())
		}
	}
	return out
}

// summarize names the first few objects of a list.
func summarize(objs []string) string {
	const show = 3
	if len(objs) <= show {
		return strings.Join(objs, ", ")
	}
	return strings.Join(objs[:show], ", ") + fmt.Sprintf(" and %d more", len(objs)-show)
}
