package report_test

import (
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/report"
)

// TestReportExitTruth: the status line and Failed agree with the counters
// (errors fail the command, a dry run says nothing was written), and the
// counters and per-collection reads are printed.
func TestReportExitTruth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rep    report.Report
		failed bool
		want   []string
	}{
		{"done", report.Report{Command: "replay ids", Read: 3, Published: 2, Skipped: 1}, false,
			[]string{"cdc replay ids: done", "read          3", "published     2", "skipped       1", "errors        0"}},
		{"errors fail", report.Report{Command: "replay ids", Read: 3, Errors: 1}, true,
			[]string{"cdc replay ids: FAILED", "errors        1"}},
		{"dry run", report.Report{Command: "snapshot", DryRun: true}, false,
			[]string{"cdc snapshot: dry run (nothing was written)"}},
		{"replay stream prints applied", report.Report{Command: "replay stream", Applied: 4, DeadLettered: 1}, false,
			[]string{"applied       4", "dead-lettered 1"}},
		{"violations", report.Report{Command: "replay stream", DeadLettered: 2, Violations: 2}, false,
			[]string{"violations    2 (class violation in cdc dlq list)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := tc.rep.Write(&b); err != nil {
				t.Fatalf("write: %v", err)
			}
			if got := tc.rep.Failed(); got != tc.failed {
				t.Fatalf("Failed() = %v, want %v", got, tc.failed)
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Fatalf("report lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

// TestReportNotesAndCollections: notes print after the status line, and
// reads per collection add up and print sorted.
func TestReportNotesAndCollections(t *testing.T) {
	r := &report.Report{Command: "snapshot"}
	r.Note("order (parents first): %s", "users,payments")
	r.AddCollection("users", 2)
	r.AddCollection("payments", 5)
	r.AddCollection("users", 1)
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatalf("write: %v", err)
	}
	out := b.String()
	note := strings.Index(out, "  order (parents first): users,payments\n")
	pay := strings.Index(out, "payments                 5 read")
	users := strings.Index(out, "users                    3 read")
	if note < 0 || pay < 0 || users < 0 || !(note < pay && pay < users) {
		t.Fatalf("want the note, then payments (5) before users (3):\n%s", out)
	}
}
