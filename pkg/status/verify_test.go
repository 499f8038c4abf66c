package status

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestVerifySection: the continuous verifier's last mismatch is shown
// (collection, document key, check, when, values), warned about while it
// is recent, absent from the JSON while nothing was recorded, and a
// failed read is a problem.
func TestVerifySection(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mismatch := func(ago time.Duration) *VerifyStatus {
		at := now.Add(-ago)
		return &VerifyStatus{Recorded: 3, Last: &VerifyMismatch{Collection: "payments", DocKey: "65f500000000000000000001", Check: "document_diff",
			Table: "payments", Column: "amount", Mongo: "1099.99", Postgres: "1099.990000000000000001", Detail: "values differ",
			At: at, AgoSeconds: ago.Seconds(), FirstSeen: at.Add(-time.Hour), Times: 4}}
	}
	cases := []struct {
		name     string
		verify   *VerifyStatus
		warning  string // a substring of the one warning; "" none
		problem  string // a substring of the one problem; "" none
		text     []string
		noText   bool
		jsonHas  string
		jsonLack string
	}{
		{name: "nothing recorded", noText: true, jsonLack: `"verify"`},
		{name: "a recent mismatch", verify: mismatch(5 * time.Minute),
			warning: "continuous verification: payments 65f500000000000000000001 failed document_diff 5m0s ago (2026-03-01T11:55:00Z): values differ; 3 document(s)",
			text: []string{"Continuous verification (cdc.verify_mismatches)", "last mismatch  payments 65f500000000000000000001, check document_diff",
				"when           5m0s ago (2026-03-01T11:55:00Z); first 2026-03-01T10:55:00Z, confirmed 4 times",
				"where          payments.amount", "values         mongo 1099.99 | postgres 1099.990000000000000001", "recorded       3 document(s)"},
			jsonHas: `"doc_key": "65f500000000000000000001"`},
		{name: "an old mismatch is shown, not warned about", verify: mismatch(48 * time.Hour), text: []string{"48h0m0s ago"}},
		{name: "unreadable", verify: &VerifyStatus{Error: `relation "cdc.verify_mismatches" does not exist`},
			problem: `verify mismatches: relation "cdc.verify_mismatches" does not exist`, text: []string{"unknown: relation"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := healthyReport(now)
			r.Verify = tc.verify
			c := &collector{r: r, opts: Options{Now: func() time.Time { return now }}, tgt: Target{HeadroomWarning: 6 * time.Hour}}
			c.lag()
			c.judge()
			if tc.warning == "" && len(r.Warnings) != 0 || tc.warning != "" && (len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], tc.warning)) {
				t.Errorf("warnings %q, want %q", r.Warnings, tc.warning)
			}
			if tc.problem == "" && len(r.Problems) != 0 || tc.problem != "" && (len(r.Problems) != 1 || !strings.Contains(r.Problems[0], tc.problem)) {
				t.Errorf("problems %q, want %q", r.Problems, tc.problem)
			}
			var txt bytes.Buffer
			if err := WriteText(&txt, r); err != nil {
				t.Fatal(err)
			}
			if tc.noText && strings.Contains(txt.String(), "Continuous verification") {
				t.Errorf("a section without any record:\n%s", txt.String())
			}
			for _, want := range tc.text {
				if !strings.Contains(txt.String(), want) {
					t.Errorf("text lacks %q:\n%s", want, txt.String())
				}
			}
			var js bytes.Buffer
			if err := WriteJSON(&js, r); err != nil {
				t.Fatal(err)
			}
			if tc.jsonHas != "" && !strings.Contains(js.String(), tc.jsonHas) || tc.jsonLack != "" && strings.Contains(js.String(), tc.jsonLack) {
				t.Errorf("JSON (want %q, not %q):\n%s", tc.jsonHas, tc.jsonLack, js.String())
			}
			var back Report
			if err := json.Unmarshal(js.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if (back.Verify == nil) != (tc.verify == nil) || back.Verify != nil && back.Verify.Last != nil && back.Verify.Last.Times != 4 {
				t.Errorf("round trip: %+v", back.Verify)
			}
		})
	}
}
