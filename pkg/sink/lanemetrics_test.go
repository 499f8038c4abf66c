package sink

import (
	"fmt"
	"slices"
	"testing"

	"github.com/amanat/cdc/pkg/event"
)

// recMetrics records the calls a lane Sink and the runner make.
type recMetrics struct {
	noMetrics
	calls []string
}

func (m *recMetrics) SetRole(role, holder string) { m.calls = append(m.calls, "role "+role) }
func (m *recMetrics) SetLag(p uint64, _ event.ClusterTime) {
	m.calls = append(m.calls, fmt.Sprintf("lag %d", p))
}
func (m *recMetrics) SetLaneAssigned(lane string, on bool) {
	m.calls = append(m.calls, fmt.Sprintf("assigned %s %v", lane, on))
}
func (m *recMetrics) SetLaneRole(lane, role, _ string) {
	m.calls = append(m.calls, "lane role "+lane+" "+role)
}
func (m *recMetrics) SetLaneLag(lane string, p uint64, _ event.ClusterTime) {
	m.calls = append(m.calls, fmt.Sprintf("lane lag %s %d", lane, p))
}

// TestLaneMetrics: a lane Sink's role goes to its lane's gauge only (never
// the instance's), its lag to both; the runner reports every lane's
// assignment and a lane not running as stopped.
func TestLaneMetrics(t *testing.T) {
	cases := []struct {
		name string
		do   func(m *recMetrics)
		want []string
	}{
		{"role", func(m *recMetrics) { laneMetrics{m, "ledger"}.SetRole("active", "me") }, []string{"lane role ledger active"}},
		{"lag", func(m *recMetrics) { laneMetrics{m, "ledger"}.SetLag(7, event.ClusterTime{}) }, []string{"lag 7", "lane lag ledger 7"}},
		{"runner", func(m *recMetrics) {
			r := &LaneRunner{metrics: m, lanes: []string{"a", "b"}}
			r.reportLanes(map[string]*laneRun{"a": {}})
		}, []string{"assigned a true", "assigned b false", "lane role b stopped"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &recMetrics{}
			tc.do(m)
			if !slices.Equal(m.calls, tc.want) {
				t.Fatalf("calls %q, want %q", m.calls, tc.want)
			}
		})
	}
	// A Metrics without the lane methods gets the shared calls only.
	laneMetrics{noMetrics{}, "x"}.SetRole("standby", "other")
	(&LaneRunner{metrics: noMetrics{}, lanes: []string{"a"}}).reportLanes(nil)
}
