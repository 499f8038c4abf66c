package metrics

import (
	"testing"

	"github.com/amanat/cdc/pkg/event"
)

// The lane gauges follow the lane runner's and the lane sinks' reports,
// one series per lane, independently of the instance-wide role.
func TestSinkLaneMetrics(t *testing.T) {
	m, h := New(), NewHealth()
	lm := m.ForSink(h)
	l := m.sinkLanes
	steps := []struct {
		name string
		do   func()
		lane string
		// want assigned, active, lag events, last applied, takeovers
		assigned, active, lag, applied, takeovers float64
	}{
		{"assigned, standing by", func() { lm.SetLaneAssigned("ledger", true); lm.SetLaneRole("ledger", "standby", "other") }, "ledger", 1, 0, 0, 0, 0},
		{"takes the fence", func() { lm.SetLaneRole("ledger", "active", "me") }, "ledger", 1, 1, 0, 0, 1},
		{"active again is no takeover", func() { lm.SetLaneRole("ledger", "active", "me") }, "ledger", 1, 1, 0, 0, 1},
		{"lag reported", func() { lm.SetLaneLag("ledger", 42, event.ClusterTime{T: 1700000000, I: 3}) }, "ledger", 1, 1, 42, 1700000000, 1},
		{"caught up keeps the last applied time", func() { lm.SetLaneLag("ledger", 0, event.ClusterTime{}) }, "ledger", 1, 1, 0, 1700000000, 1},
		{"another lane is independent", func() { lm.SetLaneAssigned("payments", false); lm.SetLaneRole("payments", "stopped", "") }, "payments", 0, 0, 0, 0, 0},
		{"unassigned and stopped", func() { lm.SetLaneAssigned("ledger", false); lm.SetLaneRole("ledger", "stopped", "") }, "ledger", 0, 0, 0, 1700000000, 1},
		{"assigned and taken again", func() { lm.SetLaneAssigned("ledger", true); lm.SetLaneRole("ledger", "active", "me") }, "ledger", 1, 1, 0, 1700000000, 2},
	}
	for _, st := range steps {
		st.do()
		got := []float64{value(t, l.assigned.WithLabelValues(st.lane)), value(t, l.active.WithLabelValues(st.lane)),
			value(t, l.lagEvents.WithLabelValues(st.lane)), value(t, l.lastApplied.WithLabelValues(st.lane)), value(t, l.takeovers.WithLabelValues(st.lane))}
		want := []float64{st.assigned, st.active, st.lag, st.applied, st.takeovers}
		for i, n := range sinkLaneNames {
			if got[i] != want[i] {
				t.Errorf("%s: %s{lane=%s} = %v, want %v", st.name, n, st.lane, got[i], want[i])
			}
		}
	}
}
