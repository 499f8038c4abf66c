package migrate

import (
	"fmt"
	"strings"
)

// reusableIndex finds an index of lt that a PRIMARY KEY or UNIQUE
// constraint can take over (ADD CONSTRAINT ... USING INDEX): valid,
// unique, on exactly body, and not already a constraint's.
func reusableIndex(lt *ctable, body string) *cidx {
	for _, ix := range lt.idx {
		if ix.valid && ix.unique && !ix.partial && !ix.exprs && ix.constraint == "" && ix.body == body {
			return ix
		}
	}
	return nil
}

// keys adds the missing PRIMARY KEY and UNIQUE constraints: the index is
// built CONCURRENTLY (or an existing equivalent one is taken over), then
// the constraint takes it with a brief lock.
func (d *differ) keys(wt, lt *ctable) {
	t := quoteIdent(wt.name)
	for _, wk := range wt.cons {
		if wk.kind != "p" && wk.kind != "u" {
			continue
		}
		obj := wt.name + "." + wk.name
		if wk.kind == "p" {
			if pk := lt.primaryKey(); pk != nil {
				if !equal(pk.cols, wk.cols) {
					d.refuse(DiffConflict, wt.name+" primary key", fmt.Sprintf("the application's primary key %s is %s, the migrations' is %s", pk.name, pk.def, wk.def))
				} else {
					d.renameConstraint(phaseKeys, wt.name, pk, wk)
				}
				continue
			}
		} else {
			var found *ccon
			for _, lk := range lt.cons {
				if (lk.kind == "u" || lk.kind == "p") && equal(lk.cols, wk.cols) && found == nil {
					found = lk
				}
			}
			if found != nil {
				if found.kind == "u" {
					d.renameConstraint(phaseKeys, wt.name, found, wk)
				}
				continue
			}
			if lk := lt.constraint(wk.name); lk != nil {
				d.refuse(DiffConflict, obj, fmt.Sprintf("the application has a constraint of that name, %s, the migrations' is %s", lk.def, wk.def))
				continue
			}
		}
		var body string
		if wi := d.want.tables[wt.name].index(wk.index); wi != nil {
			body = wi.body
		}
		kw := map[string]string{"p": "PRIMARY KEY", "u": "UNIQUE"}[wk.kind]
		if ix := reusableIndex(lt, body); ix != nil && body != "" {
			d.step(phaseKeys, Step{
				Table:    wt.name,
				Summary:  fmt.Sprintf("add %s %s to %s, taking over the application's index %s (renamed %s)", kw, wk.name, wt.name, ix.name, wk.name),
				SQL:      []string{fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s USING INDEX %s", t, quoteIdent(wk.name), kw, quoteIdent(ix.name))},
				Blocking: true,
			})
			continue
		}
		if body == "" {
			d.refuse(DiffConflict, obj, "cannot tell the index behind the migrations' "+kw)
			continue
		}
		var sqls []string
		if li := lt.index(wk.name); li != nil {
			if li.valid {
				d.refuse(DiffConflict, obj, fmt.Sprintf("the application has an index of that name that is not %s: %s", wk.def, li.body))
				continue
			}
			sqls = append(sqls, "DROP INDEX CONCURRENTLY IF EXISTS "+quoteIdent(wk.name))
		} else if d.live.relations[wk.name] {
			d.refuse(DiffConflict, obj, "another relation has the name of the migrations' "+kw)
			continue
		}
		sqls = append(sqls, fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY %s ON %s %s", quoteIdent(wk.name), t, strings.TrimPrefix(body, "UNIQUE ")))
		d.step(phaseKeys, Step{
			Table:   wt.name,
			Summary: fmt.Sprintf("add %s %s to %s, 1/2: build its unique index CONCURRENTLY (reads and writes continue; fails, naming a duplicate, if the rows are not unique)", kw, wk.name, wt.name),
			SQL:     sqls,
		})
		d.step(phaseKeys, Step{
			Table:    wt.name,
			Summary:  fmt.Sprintf("add %s %s to %s, 2/2: the constraint takes the index", kw, wk.name, wt.name),
			SQL:      []string{fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s USING INDEX %s", t, quoteIdent(wk.name), kw, quoteIdent(wk.name))},
			Blocking: true,
		})
	}
}

// checks adds the missing CHECK constraints NOT VALID (a brief lock, no
// scan; new rows are checked from then on) and validates them in a
// second step (a scan that lets reads and writes continue).
func (d *differ) checks(wt, lt *ctable) {
	t := quoteIdent(wt.name)
	for _, wk := range wt.cons {
		if wk.kind != "c" {
			continue
		}
		obj := wt.name + "." + wk.name
		var have *ccon
		if lk := lt.constraint(wk.name); lk != nil {
			if lk.kind != "c" || lk.def != wk.def {
				d.refuse(DiffConflict, obj, fmt.Sprintf("the application has a constraint of that name, %s, the migrations' is %s: drop or rename it", lk.def, wk.def))
				continue
			}
			have = lk
		} else {
			for _, lk := range lt.cons {
				if lk.kind == "c" && lk.def == wk.def {
					have = lk
					break
				}
			}
		}
		if have == nil {
			d.step(phaseChecks, Step{
				Table:    wt.name,
				Summary:  fmt.Sprintf("add %s to %s NOT VALID (new rows are checked from now on)", wk.name, wt.name),
				SQL:      []string{fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID", t, quoteIdent(wk.name), wk.def)},
				Blocking: true,
			})
		} else if have.validated {
			d.renameConstraint(phaseChecks, wt.name, have, wk)
		}
		if have == nil || !have.validated {
			name := wk.name
			if have != nil {
				name = d.renameConstraint(phaseChecks, wt.name, have, wk)
			}
			d.step(phaseChecks, Step{
				Table:   wt.name,
				Summary: fmt.Sprintf("validate %s on %s (scans the rows; reads and writes continue; fails, naming the constraint, on a row that breaks it)", name, wt.name),
				SQL:     []string{fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", t, quoteIdent(name))},
			})
		}
	}
	d.extraConstraints(wt, lt)
}

// extraConstraints notes the application's own UNIQUE and CHECK
// constraints that the migrations do not create: they stay, and may refuse
// rows the migrations' schema would take.
func (d *differ) extraConstraints(wt, lt *ctable) {
	for _, lk := range lt.cons {
		if lk.kind != "u" && lk.kind != "c" {
			continue
		}
		if strings.HasPrefix(lk.name, "cdc_adopt_") {
			continue
		}
		matched := false
		for _, wk := range wt.cons {
			if wk.kind == lk.kind && (wk.name == lk.name || wk.def == lk.def) {
				matched = true
			}
		}
		if !matched {
			d.note("%s keeps the application's constraint %s %s, which the migrations do not create (it may refuse rows they allow)", wt.name, lk.name, lk.def)
		}
	}
}

// fkCore is a foreign key's definition without its deferrability.
func fkCore(def string) string {
	def = strings.Replace(def, " DEFERRABLE INITIALLY DEFERRED", "", 1)
	return strings.Replace(def, " DEFERRABLE", "", 1)
}

func fkTiming(def string) string {
	switch {
	case strings.Contains(def, " DEFERRABLE INITIALLY DEFERRED"):
		return "DEFERRABLE INITIALLY DEFERRED"
	case strings.Contains(def, " DEFERRABLE"):
		return "DEFERRABLE INITIALLY IMMEDIATE"
	}
	return "NOT DEFERRABLE"
}

// foreignKeys adds the adopted migrations' foreign keys NOT VALID, then
// validates them; an equivalent one of the application's is kept (made
// deferrable as the sink needs, validated).
func (d *differ) foreignKeys(wt, lt *ctable) {
	t := quoteIdent(wt.name)
	for _, wk := range wt.cons {
		if wk.kind != "f" {
			continue
		}
		obj := wt.name + "." + wk.name
		var have *ccon
		if lt != nil {
			if lk := lt.constraint(wk.name); lk != nil {
				if lk.kind != "f" || fkCore(lk.def) != fkCore(wk.def) {
					d.refuse(DiffConflict, obj, fmt.Sprintf("the application has a constraint of that name, %s, the migrations' is %s", lk.def, wk.def))
					continue
				}
				have = lk
			} else {
				for _, lk := range lt.cons {
					if lk.kind == "f" && equal(lk.cols, wk.cols) {
						if fkCore(lk.def) != fkCore(wk.def) {
							d.refuse(DiffConflict, obj, fmt.Sprintf("the application's foreign key %s on the same columns is %s, the migrations' is %s", lk.name, lk.def, wk.def))
						}
						have = lk
						break
					}
				}
				if have != nil && fkCore(have.def) != fkCore(wk.def) {
					continue
				}
			}
		}
		name := wk.name
		if have == nil {
			d.step(phaseForeignKeys, Step{
				Table:    wt.name,
				Summary:  fmt.Sprintf("add foreign key %s to %s NOT VALID (new rows are checked from now on)", wk.name, wt.name),
				SQL:      []string{fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID", t, quoteIdent(wk.name), wk.def)},
				Blocking: true,
			})
		} else {
			name = d.renameConstraint(phaseForeignKeys, wt.name, have, wk)
			if fkTiming(have.def) != fkTiming(wk.def) {
				d.step(phaseForeignKeys, Step{
					Table:    wt.name,
					Summary:  fmt.Sprintf("make the application's foreign key %s on %s %s (the sink defers foreign keys to commit)", name, wt.name, fkTiming(wk.def)),
					SQL:      []string{fmt.Sprintf("ALTER TABLE %s ALTER CONSTRAINT %s %s", t, quoteIdent(name), fkTiming(wk.def))},
					Blocking: true,
				})
			}
		}
		if have == nil || !have.validated {
			d.step(phaseForeignKeys, Step{
				Table:   wt.name,
				Summary: fmt.Sprintf("validate foreign key %s on %s (scans the rows; reads and writes continue; fails on a dangling reference)", name, wt.name),
				SQL:     []string{fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", t, quoteIdent(name))},
			})
		}
	}
}
