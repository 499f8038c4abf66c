package metrics

import (
	"strings"
	"testing"
)

// The verifier's counters exist at 0 for every collection and check from
// the first ForVerify, a second ForVerify shares them, and they count.
func TestVerifyMetrics(t *testing.T) {
	m := New()
	v := m.ForVerify([]string{"payments", "users"}, []string{"document_diff", "idmap_mongo_to_pg"})
	series := func(name string) int {
		t.Helper()
		mfs, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return len(mf.GetMetric())
			}
		}
		return 0
	}
	if n := series("cdc_verify_mismatches_total"); n != 4 {
		t.Fatalf("%d mismatch series before any mismatch, want 4 (2 collections x 2 checks)", n)
	}
	if n := series("cdc_verify_checked_total"); n != 2 {
		t.Fatalf("%d checked series, want 2", n)
	}
	again := m.ForVerify([]string{"payments"}, []string{"document_diff"})
	v.Checked("payments", 100)
	again.Checked("payments", 20)
	v.Checked("users", 0)
	again.Mismatch("payments", "document_diff")
	if got := value(t, v.checked.WithLabelValues("payments")); got != 120 {
		t.Errorf("checked{payments} = %v, want 120", got)
	}
	if got := value(t, v.mismatches.WithLabelValues("payments", "document_diff")); got != 1 {
		t.Errorf("mismatches{payments,document_diff} = %v, want 1", got)
	}
	for _, n := range VerifyNames {
		if !strings.HasPrefix(n, "cdc_verify_") || !contains(Names, n) {
			t.Errorf("%s is not in Names", n)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
