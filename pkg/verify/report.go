package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// ReportVersion is the version of the JSON report format. Fields are only
// ever added within a version.
const ReportVersion = 1

// Check outcomes.
const (
	StatusPass  = "pass"
	StatusFail  = "fail"
	StatusError = "error"
)

// Report is the outcome of a verify run; it is what `cdc verify --json`
// prints.
type Report struct {
	Version int `json:"version"`
	// OK is true only when every check ran and passed.
	OK         bool      `json:"ok"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Database   string    `json:"database"`
	// Mode is "full" or "sample"; Sample is the sample size per collection.
	Mode        string   `json:"mode"`
	Sample      int      `json:"sample,omitempty"`
	Collections []string `json:"collections"`
	Checks      []*Check `json:"checks"`
	// Errors are failures outside any one check (a database unreachable,
	// the transforms not matching the catalog).
	Errors []RunError `json:"errors,omitempty"`
	// Notes say what limited the run (for instance an unreadable oplog).
	Notes  []string `json:"notes,omitempty"`
	Totals Totals   `json:"totals"`
}

// RunError is a failure of the run itself.
type RunError struct {
	// System is "mongodb" or "postgresql" when a database was
	// unreachable, else "".
	System string `json:"system,omitempty"`
	Error  string `json:"error"`
}

// Totals sums the checks.
type Totals struct {
	Checks     int   `json:"checks"`
	Passed     int   `json:"passed"`
	Failed     int   `json:"failed"`
	Errors     int   `json:"errors"`
	Mismatches int64 `json:"mismatches"`
}

// Check is one check of one collection (or of the ledger).
type Check struct {
	Name       string `json:"name"`
	Collection string `json:"collection"`
	Status     string `json:"status"`
	// Counts are what the check counted (documents, rows, sums...).
	Counts map[string]int64 `json:"counts"`
	// Mismatches is the number of problems found (complete, never capped).
	Mismatches int64 `json:"mismatches"`
	// Examples are the first Config.Examples mismatches.
	Examples []Example `json:"examples"`
	// Error says why the check could not complete (Status "error").
	Error string `json:"error,omitempty"`
	// Notes qualify the result (corrections applied, scope).
	Notes []string `json:"notes,omitempty"`

	maxExamples int
}

// Example is one mismatch.
type Example struct {
	// ID is the Mongo _id (the id_map legacy id) when known.
	ID string `json:"id,omitempty"`
	// PGID is the row's primary key in Postgres when known.
	PGID   string `json:"pg_id,omitempty"`
	Table  string `json:"table,omitempty"`
	Column string `json:"column,omitempty"`
	// Mongo and Postgres are the compared values in canonical form.
	Mongo    string `json:"mongo,omitempty"`
	Postgres string `json:"postgres,omitempty"`
	Detail   string `json:"detail"`
}

func newCheck(name, coll string, maxExamples int) *Check {
	return &Check{Name: name, Collection: coll, Status: StatusPass, Counts: map[string]int64{}, Examples: []Example{}, maxExamples: maxExamples}
}

// mismatch records one problem (and keeps it as an example while there is
// room).
func (c *Check) mismatch(ex Example) {
	c.Mismatches++
	if c.Status == StatusPass {
		c.Status = StatusFail
	}
	if len(c.Examples) < c.maxExamples {
		c.Examples = append(c.Examples, ex)
	}
}

// fail marks the check errored.
func (c *Check) fail(err error) {
	c.Status = StatusError
	c.Error = err.Error()
}

func (c *Check) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	for _, old := range c.Notes {
		if old == n {
			return
		}
	}
	c.Notes = append(c.Notes, n)
}

// finish computes OK and the totals.
func (r *Report) finish() {
	r.Totals = Totals{}
	for _, c := range r.Checks {
		r.Totals.Checks++
		r.Totals.Mismatches += c.Mismatches
		switch c.Status {
		case StatusPass:
			r.Totals.Passed++
		case StatusFail:
			r.Totals.Failed++
		default:
			r.Totals.Errors++
		}
	}
	r.OK = len(r.Errors) == 0 && r.Totals.Checks > 0 && r.Totals.Passed == r.Totals.Checks
}

// Summary is a one-line outcome for logs and the exit message.
func (r *Report) Summary() string {
	if r.OK {
		return fmt.Sprintf("all %d checks passed", r.Totals.Checks)
	}
	var parts []string
	for _, e := range r.Errors {
		parts = append(parts, e.Error)
	}
	var failed []string
	for _, c := range r.Checks {
		if c.Status != StatusPass {
			failed = append(failed, c.Collection+"/"+c.Name)
		}
	}
	if len(failed) > 0 {
		if len(failed) > 8 {
			failed = append(failed[:8], fmt.Sprintf("... %d more", len(failed)-8))
		}
		parts = append(parts, fmt.Sprintf("%d of %d checks failed, %d errored, %d mismatches: %s",
			r.Totals.Failed, r.Totals.Checks, r.Totals.Errors, r.Totals.Mismatches, strings.Join(failed, ", ")))
	}
	if len(parts) == 0 {
		parts = append(parts, "no check ran")
	}
	return strings.Join(parts, "; ")
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people: one line per check, then the
// examples of every check that did not pass.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COLLECTION\tCHECK\tRESULT\tMISMATCHES\tCOUNTS")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", c.Collection, c.Name, strings.ToUpper(c.Status), c.Mismatches, countsText(c.Counts))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Checks {
		if c.Status == StatusPass && len(c.Notes) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s / %s: %s", c.Collection, c.Name, strings.ToUpper(c.Status))
		if c.Status == StatusError {
			fmt.Fprintf(w, ": %s", c.Error)
		}
		fmt.Fprintln(w)
		for _, n := range c.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		for _, ex := range c.Examples {
			fmt.Fprintf(w, "  - %s\n", ex.text())
		}
		if int64(len(c.Examples)) < c.Mismatches {
			fmt.Fprintf(w, "  ... %d more (%d in all)\n", c.Mismatches-int64(len(c.Examples)), c.Mismatches)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nERROR: %s\n", e.Error)
	}
	verdict := "OK"
	if !r.OK {
		verdict = "FAILED"
	}
	_, err := fmt.Fprintf(w, "\n%s: %d checks, %d passed, %d failed, %d errors, %d mismatches (%s, %s)\n", verdict,
		r.Totals.Checks, r.Totals.Passed, r.Totals.Failed, r.Totals.Errors, r.Totals.Mismatches, r.Mode,
		r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	return err
}

func countsText(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func (e Example) text() string {
	var b strings.Builder
	if e.ID != "" {
		fmt.Fprintf(&b, "_id %s ", e.ID)
	}
	if e.PGID != "" {
		fmt.Fprintf(&b, "(row %s) ", e.PGID)
	}
	if e.Table != "" || e.Column != "" {
		fmt.Fprintf(&b, "%s", e.Table)
		if e.Column != "" {
			fmt.Fprintf(&b, ".%s", e.Column)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Detail)
	if e.Mongo != "" || e.Postgres != "" {
		fmt.Fprintf(&b, " [mongo %s | postgres %s]", e.Mongo, e.Postgres)
	}
	return b.String()
}

// Aborted is the report of a run that could not start (a database
// unreachable, a configuration refused): no check ran, so it is not OK.
func Aborted(cfg *Config, err error) *Report {
	now := time.Now().UTC()
	mode := "full"
	if cfg.Sample > 0 {
		mode = "sample"
	}
	re := RunError{Error: err.Error()}
	var ue *UnreachableError
	if errors.As(err, &ue) {
		re.System = ue.System
	}
	r := &Report{Version: ReportVersion, StartedAt: now, FinishedAt: now, Database: cfg.Database, Mode: mode, Sample: cfg.Sample,
		Collections: cfg.Collections, Checks: []*Check{}, Errors: []RunError{re}}
	r.finish()
	return r
}
