package verify_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/verify"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s changed (a persisted format: bump verify.ReportVersion if it is not an addition):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestAbortedReportFormat pins the JSON report's format (version 1) with
// the report of a run that could not reach MongoDB.
func TestAbortedReportFormat(t *testing.T) {
	cfg := verify.Config{Database: "escrow", Collections: []string{"payments"}, Sample: 100}
	rep := verify.Aborted(&cfg, &verify.UnreachableError{System: verify.SystemMongo, Err: errors.New("server selection timeout")})
	if rep.OK || rep.Version != 1 || rep.Errors[0].System != "mongodb" {
		t.Fatalf("aborted report: %+v", rep)
	}
	rep.StartedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep.FinishedAt = rep.StartedAt
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "aborted.golden.json", b.Bytes())
	b.Reset()
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "ERROR: MongoDB unreachable: server selection timeout") || !strings.Contains(b.String(), "FAILED: 0 checks") {
		t.Fatalf("text report:\n%s", b.String())
	}
	if s := rep.Summary(); !strings.Contains(s, "MongoDB unreachable") {
		t.Fatalf("summary %q", s)
	}
}

func TestUnreachableError(t *testing.T) {
	err := error(&verify.UnreachableError{System: verify.SystemPostgres, Err: errors.New("connection refused")})
	if !verify.IsUnreachable(err) || !errors.Is(err, verify.ErrUnreachable) || err.Error() != "PostgreSQL unreachable: connection refused" {
		t.Fatalf("%v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := verify.Config{Database: "d", Collections: []string{"c"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]verify.Config{
		"no database":    {Collections: []string{"c"}},
		"no collections": {Database: "d"},
		"negative":       {Database: "d", Collections: []string{"c"}, Sample: -1},
		"huge chunk":     {Database: "d", Collections: []string{"c"}, ChunkSize: 1_000_000},
	} {
		if err := c.Validate(); !errors.Is(err, verify.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestReportFormat pins the JSON fields of checks and examples.
func TestReportFormat(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := &verify.Report{Version: verify.ReportVersion, OK: false, StartedAt: at, FinishedAt: at.Add(1500 * time.Millisecond),
		Database: "escrow", Mode: "full", Collections: []string{"payments"},
		Checks: []*verify.Check{
			{Name: "count", Collection: "payments", Status: verify.StatusPass, Counts: map[string]int64{"mongo": 3, "postgres": 3}, Examples: []verify.Example{}},
			{Name: "document_diff", Collection: "payments", Status: verify.StatusFail, Counts: map[string]int64{"compared": 3}, Mismatches: 1,
				Examples: []verify.Example{{ID: "65f5000000000000000000a3", PGID: "01a21389-2d33-7d91-842b-7a79483ec848", Table: "payments",
					Column: "amount", Mongo: "1099.99", Postgres: "1099.990000000000000001", Detail: "values differ"}}},
			{Name: "fk_integrity", Collection: "payments", Status: verify.StatusError, Counts: map[string]int64{}, Examples: []verify.Example{},
				Error: "PostgreSQL unreachable: connection refused", Notes: []string{"not completed"}},
		},
		Notes:  []string{"the oplog could not be read"},
		Totals: verify.Totals{Checks: 3, Passed: 1, Failed: 1, Errors: 1, Mismatches: 1},
	}
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.golden.json", b.Bytes())
	b.Reset()
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.golden.txt", b.Bytes())
}
