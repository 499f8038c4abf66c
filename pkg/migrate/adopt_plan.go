package migrate

import (
	"fmt"
	"io"
	"strings"
)

// Write prints the plan for an operator (cdc migrate --plan): why there
// is or is no adoption, what refuses it, every step with its SQL, what
// happens to each pending migration, and what stays as it is.
func (p *Plan) Write(w io.Writer) error {
	ew := &errWriter{w: w}
	switch {
	case len(p.Migrations) == 0:
		ew.printf("Nothing to do: %s.\n", p.Reason)
		return ew.err
	case !p.Adopt:
		ew.printf("No adoption: %s.\n", p.Reason)
		ew.printf("The %d pending migration(s) run as usual, in order:\n", len(p.Migrations))
		for _, m := range p.Migrations {
			ew.printf("  %s\n", m.Name)
		}
		return ew.err
	}
	ew.printf("Adoption: %s.\n", p.Reason)
	ew.printf("cdc migrate makes the application's schema what the migrations through %05d would have made,\n", p.Through)
	ew.printf("adding only what is missing, records those migrations as applied, then runs the later ones.\n")
	if len(p.Differences) > 0 {
		ew.printf("\nREFUSED: %d difference(s) cannot be adopted safely; nothing is changed until they are resolved:\n", len(p.Differences))
		for _, d := range p.Differences {
			ew.printf("  - %s\n", d)
		}
	}
	ew.printf("\nSteps, in order (each statement on its own unless the step says one transaction;\n")
	ew.printf("[lock]: takes a lock that blocks writes to the table, waiting at most the lock timeout for it):\n")
	if len(p.Steps) == 0 {
		ew.printf("  (none: the tables already have everything)\n")
	}
	for i, st := range p.Steps {
		var tags []string
		if st.Blocking {
			tags = append(tags, "lock")
		}
		if st.Rewrite {
			tags = append(tags, "rewrite")
		}
		if st.OneTx && len(st.SQL) > 1 {
			tags = append(tags, "one transaction")
		}
		tag := ""
		if len(tags) > 0 {
			tag = " [" + strings.Join(tags, ", ") + "]"
		}
		ew.printf("%3d. %s%s\n", i+1, st.Summary, tag)
		for _, q := range st.SQL {
			for _, line := range strings.Split(strings.TrimRight(q, "\n")+";", "\n") {
				ew.printf("       %s\n", line)
			}
		}
	}
	ew.printf("\nMigration record (%s):\n", VersionTable)
	var later []string
	for _, m := range p.Migrations {
		if m.Version > p.Through {
			later = append(later, m.Name)
			continue
		}
		verb := "apply "
		if m.Action == ActionRecord {
			verb = "record"
		}
		ew.printf("  %-34s %s  %s\n", m.Name, verb, m.Why)
	}
	if len(later) > 0 {
		ew.printf("  then the later migrations run as usual (%s): %s\n", countMigrations(len(later)), strings.Join(later, ", "))
	}
	if len(p.Notes) > 0 {
		ew.printf("\nKept as they are:\n")
		for _, n := range p.Notes {
			ew.printf("  - %s\n", n)
		}
	}
	return ew.err
}

func countMigrations(n int) string {
	if n == 1 {
		return "1 migration"
	}
	return fmt.Sprintf("%d migrations", n)
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err != nil {
		return
	}
	_, e.err = fmt.Fprintf(e.w, format, args...)
}
