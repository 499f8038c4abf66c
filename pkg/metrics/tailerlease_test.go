package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The lease metrics follow the tailer's reports: held-since while it
// holds a valid lease (0 otherwise), one takeover count per reason (the
// reasons ForTailer is given exported from the start), the last
// takeover's time, the lapses. The reasons are the tailer's
// (pkg/app/metrics_adapters_test.go checks the wired ones).
func TestTailerLeaseMetrics(t *testing.T) {
	const expired, released = "expired", "released"
	m, h := New(), NewHealth()
	tm := m.ForTailer(h, expired, released)
	l := m.tailerState.lease
	for _, reason := range []string{expired, released} {
		if got := value(t, l.takeovers.WithLabelValues(reason)); got != 0 {
			t.Fatalf("takeovers{reason=%s} starts at %v", reason, got)
		}
	}
	since := time.Date(2026, 1, 2, 3, 4, 5, 500_000_000, time.UTC)
	tm.Lease(true, since)
	if got := value(t, l.heldSince); got != 1767323045.5 {
		t.Fatalf("held since %v, want %v", got, 1767323045.5)
	}
	tm.TakenOver(expired, since)
	tm.TakenOver(expired, since.Add(time.Second))
	tm.TakenOver(released, since.Add(2*time.Second))
	tm.LeaseLapsed()
	tm.Lease(false, time.Time{})
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"expired takeovers", value(t, l.takeovers.WithLabelValues(expired)), 2},
		{"released takeovers", value(t, l.takeovers.WithLabelValues(released)), 1},
		{"last takeover", value(t, l.lastTakeover), 1767323047.5},
		{"lapses", value(t, l.lapses), 1},
		{"held since after losing the lease", value(t, l.heldSince), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

// value reads a gauge's or counter's current value.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	t.Fatalf("%v is neither a gauge nor a counter", c.Desc())
	return 0
}
