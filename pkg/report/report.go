// Package report is the end-of-command report of the operator commands
// that move data (snapshot, replay oplog, replay stream, replay ids):
// counters each command fills, notes, and the outcome that decides the
// exit code. It is a domain package of its own so the tools share it
// without importing one another.
package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Report is what an operator command did, printed at its end. Every
// command fills the counters that apply to it; Errors > 0 means the
// command exits non-zero.
type Report struct {
	// Command names the command ("snapshot", "replay oplog", ...).
	Command string
	// DryRun reports a plan: nothing was written.
	DryRun bool
	// Read counts documents or events read from the source.
	Read int64
	// Published counts events JetStream stored.
	Published int64
	// Applied counts events written to Postgres (replay stream).
	Applied int64
	// Skipped counts what needed no write: duplicates JetStream already
	// held, events the version guard found already applied, non-document
	// changes.
	Skipped int64
	// DeadLettered counts events Postgres refused (replay stream); they
	// are in cdc.dead_letters with the reason.
	DeadLettered int64
	// Violations counts the dead-lettered events that broke an invariant
	// of their mapping (a ledger entry that differs from its stored row):
	// tampering with the source or the target, for an operator to judge.
	Violations int64
	// Errors counts failures: anything not done that should have been.
	Errors int64
	// Collections breaks Read down per collection.
	Collections map[string]int64
	// Notes are human lines printed after the counters (the plan of a
	// dry run, what to do next).
	Notes []string
}

// Note appends a line to the report.
func (r *Report) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// AddCollection counts n documents read of coll.
func (r *Report) AddCollection(coll string, n int64) {
	if r.Collections == nil {
		r.Collections = map[string]int64{}
	}
	r.Collections[coll] += n
}

// Failed reports whether the command must exit non-zero.
func (r *Report) Failed() bool { return r.Errors > 0 }

// Write prints the report.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	status := "done"
	switch {
	case r.DryRun:
		status = "dry run (nothing was written)"
	case r.Failed():
		status = "FAILED"
	}
	fmt.Fprintf(&b, "cdc %s: %s\n", r.Command, status)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  %s\n", n)
	}
	fmt.Fprintf(&b, "  read          %d\n", r.Read)
	fmt.Fprintf(&b, "  published     %d\n", r.Published)
	if r.Applied > 0 || r.Command == "replay stream" {
		fmt.Fprintf(&b, "  applied       %d\n", r.Applied)
		fmt.Fprintf(&b, "  dead-lettered %d\n", r.DeadLettered)
	}
	if r.Violations > 0 {
		fmt.Fprintf(&b, "  violations    %d (class violation in cdc dlq list)\n", r.Violations)
	}
	fmt.Fprintf(&b, "  skipped       %d\n", r.Skipped)
	fmt.Fprintf(&b, "  errors        %d\n", r.Errors)
	if len(r.Collections) > 0 {
		names := make([]string, 0, len(r.Collections))
		for c := range r.Collections {
			names = append(names, c)
		}
		sort.Strings(names)
		for _, c := range names {
			fmt.Fprintf(&b, "    %-24s %d read\n", c, r.Collections[c])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
