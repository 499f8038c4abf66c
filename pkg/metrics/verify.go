package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// VerifyNames are the continuous verifier's metrics (in Names too).
var VerifyNames = []string{
	"cdc_verify_checked_total",
	"cdc_verify_mismatches_total",
}

func init() { Names = append(Names, VerifyNames...) }

// VerifyMetrics is the continuous verifier's counters (it implements
// pkg/verify's Metrics): cdc_verify_checked_total{collection}, the
// documents compared and settled, and
// cdc_verify_mismatches_total{collection,check}, the mismatches that
// survived their re-check (alert CDCVerifyMismatch on any increase).
type VerifyMetrics struct {
	checked    *prometheus.CounterVec
	mismatches *prometheus.CounterVec
}

// ForVerify registers the verifier's counters in m's registry (the first
// call; later ones share them) and gives every collection, and every pair
// of collection and check, a series at 0, so that a sink process exports
// them whether or not verify.continuous.rate is on (flat at 0 when off)
// and increase() sees the first mismatch as one.
func (m *Metrics) ForVerify(collections, checks []string) *VerifyMetrics {
	v := &VerifyMetrics{
		checked: register(m.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_verify_checked_total",
			Help: "Documents the continuous verifier (verify.continuous.rate) compared with their rows and settled (those still in flight after the re-check delay, or behind an open dead letter, are not counted)."},
			[]string{"collection"})),
		mismatches: register(m.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_verify_mismatches_total",
			Help: "Documents the continuous verifier found different from their rows, still different after verify.continuous.recheck, by check (document_diff, idmap_mongo_to_pg, idmap_pg_to_mongo); counted again on every pass while it lasts. cdc status shows the last one."},
			[]string{"collection", "check"})),
	}
	for _, c := range collections {
		v.checked.WithLabelValues(c)
		for _, ch := range checks {
			v.mismatches.WithLabelValues(c, ch)
		}
	}
	return v
}

// register registers c, or returns the collector registered before under
// its name.
func register(r prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic(err) // a programming error: another collector under this name
	}
	return c
}

// Checked implements verify.Metrics.
func (v *VerifyMetrics) Checked(collection string, n int) {
	if n > 0 {
		v.checked.WithLabelValues(collection).Add(float64(n))
	}
}

// Mismatch implements verify.Metrics.
func (v *VerifyMetrics) Mismatch(collection, check string) {
	v.mismatches.WithLabelValues(collection, check).Inc()
}
