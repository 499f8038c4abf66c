package migrate

import (
	"fmt"
	"strings"
)

// indexes builds the missing plain indexes CONCURRENTLY. An index of the
// application's with the same definition counts, whatever its name; an
// INVALID one with the migrations' name (a build that failed half-way) is
// dropped and built again.
func (d *differ) indexes(wt, lt *ctable) {
	for _, wi := range wt.idx {
		if wi.constraint != "" {
			continue
		}
		obj := "index " + wi.name
		var sqls []string
		if lt != nil {
			if li := lt.index(wi.name); li != nil {
				switch {
				case li.valid && li.body == wi.body:
					continue
				case li.valid:
					d.refuse(DiffConflict, obj, fmt.Sprintf("the application has an index of that name on %s that is %s, the migrations' is %s: drop or rename it", wt.name, li.body, wi.body))
					continue
				}
				sqls = append(sqls, "DROP INDEX CONCURRENTLY IF EXISTS "+quoteIdent(wi.name))
			} else {
				var found *cidx
				for _, li := range lt.idx {
					if li.valid && li.body == wi.body {
						found = li
						break
					}
				}
				if found != nil {
					if found.constraint == "" && d.referenced(wi.name) {
						if d.live.relations[wi.name] {
							d.refuse(DiffConflict, obj, fmt.Sprintf("a later migration names %s, the application's equivalent is %s, and another relation has the name", wi.name, found.name))
							continue
						}
						d.step(phaseIndexes, Step{
							Table:    wt.name,
							Summary:  fmt.Sprintf("rename the application's index %s on %s to %s (it is the migrations' %s, and a later migration names it)", found.name, wt.name, wi.name, wi.name),
							SQL:      []string{fmt.Sprintf("ALTER INDEX %s RENAME TO %s", quoteIdent(found.name), quoteIdent(wi.name))},
							Blocking: true,
						})
					}
					continue
				}
			}
		}
		if sqls == nil && d.live.relations[wi.name] {
			d.refuse(DiffConflict, obj, "another relation has the name of the migrations' index on "+wt.name)
			continue
		}
		kw := "INDEX"
		body := wi.body
		if wi.unique {
			kw, body = "UNIQUE INDEX", strings.TrimPrefix(body, "UNIQUE ")
		}
		summary := fmt.Sprintf("create %s %s on %s CONCURRENTLY (reads and writes continue)", strings.ToLower(kw), wi.name, wt.name)
		if wi.unique {
			summary += "; fails, naming a duplicate, if the rows are not unique"
		}
		sqls = append(sqls, fmt.Sprintf("CREATE %s CONCURRENTLY %s ON %s %s", kw, quoteIdent(wi.name), quoteIdent(wt.name), body))
		d.step(phaseIndexes, Step{Table: wt.name, Summary: summary, SQL: sqls})
	}
}

// extraUniqueIndexes notes the application's own unique indexes that no
// index or constraint of the migrations matches: they stay, and may refuse
// rows the migrations' schema would take.
func (d *differ) extraUniqueIndexes(wt, lt *ctable) {
	for _, li := range lt.idx {
		if !li.unique || li.constraint != "" {
			continue
		}
		matched := false
		for _, wi := range wt.idx {
			matched = matched || wi.body == li.body
		}
		if !matched {
			d.note("%s keeps the application's unique index %s %s, which the migrations do not create (it may refuse rows they allow)", wt.name, li.name, li.body)
		}
	}
}

var triggerEnable = map[string]string{"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER", "D": "DISABLE TRIGGER"}

// triggers creates the missing triggers (the ledger's append-only ones)
// and brings their firing mode (ENABLE ALWAYS: they fire under
// session_replication_role = replica too) to the migrations'. A trigger
// of that name with another definition is replaced in one transaction,
// so the table is never without it.
func (d *differ) triggers(wt, lt *ctable) {
	t := quoteIdent(wt.name)
	for _, wg := range wt.trig {
		enable := fmt.Sprintf("ALTER TABLE %s %s %s", t, triggerEnable[wg.enabled], quoteIdent(wg.name))
		var lg *ctrig
		if lt != nil {
			lg = lt.trigger(wg.name)
		}
		switch {
		case lg == nil:
			sqls := []string{wg.def}
			if wg.enabled != "O" {
				sqls = append(sqls, enable)
			}
			d.step(phaseTriggers, Step{
				Table:    wt.name,
				Summary:  fmt.Sprintf("create trigger %s on %s (%s)", wg.name, wt.name, strings.ToLower(triggerEnable[wg.enabled])),
				SQL:      sqls,
				OneTx:    true,
				Blocking: true,
			})
		case lg.def != wg.def:
			sqls := []string{fmt.Sprintf("DROP TRIGGER %s ON %s", quoteIdent(wg.name), t), wg.def}
			if wg.enabled != "O" {
				sqls = append(sqls, enable)
			}
			d.step(phaseTriggers, Step{
				Table:    wt.name,
				Summary:  fmt.Sprintf("replace trigger %s on %s with the migrations' definition, in one transaction", wg.name, wt.name),
				SQL:      sqls,
				OneTx:    true,
				Blocking: true,
			})
		case lg.enabled != wg.enabled:
			d.step(phaseTriggers, Step{
				Table:    wt.name,
				Summary:  fmt.Sprintf("%s %s on %s", strings.ToLower(triggerEnable[wg.enabled]), wg.name, wt.name),
				SQL:      []string{enable},
				Blocking: true,
			})
		}
	}
}
