package sink

import "github.com/amanat/cdc/pkg/event"

// LaneMetrics is what a Metrics may also implement to report each lane on
// its own (pkg/metrics does): with lanes, the lane Sinks of one instance
// share its Metrics, so the instance-wide role and lag gauges would only
// show whichever lane reported last. The runner and its lane Sinks call
// these with the lane's name; a Metrics without them gets the shared
// calls only.
type LaneMetrics interface {
	// SetLaneAssigned reports whether the rendezvous assignment gives lane
	// to this instance (it runs the lane's Sink, active or standing by for
	// the previous holder's fence).
	SetLaneAssigned(lane string, assigned bool)
	// SetLaneRole reports whether this instance applies lane ("active":
	// it holds the lane's fence) or not ("standby": holder has it;
	// "stopped": the lane is not assigned here).
	SetLaneRole(lane, role, holder string)
	// SetLaneLag reports lane's pending events and newest applied cluster
	// time.
	SetLaneLag(lane string, pending uint64, lastApplied event.ClusterTime)
}

// laneMetrics is a lane Sink's Metrics: the role goes to the lane's gauge
// only (a lane standing by must not report the instance as standby while
// it applies other lanes: the runner reports the instance's role), the lag
// to both the lane's and the shared gauges.
type laneMetrics struct {
	Metrics
	lane string
}

func (l laneMetrics) SetRole(role, holder string) {
	if lm, ok := l.Metrics.(LaneMetrics); ok {
		lm.SetLaneRole(l.lane, role, holder)
	}
}

func (l laneMetrics) SetLag(pending uint64, lastApplied event.ClusterTime) {
	l.Metrics.SetLag(pending, lastApplied)
	if lm, ok := l.Metrics.(LaneMetrics); ok {
		lm.SetLaneLag(l.lane, pending, lastApplied)
	}
}

// reportLanes reports, after a reassignment round, which lanes run here;
// a lane not running is not active here either (its Sink has returned:
// stop waits for it, so no later SetRole of it can follow).
func (r *LaneRunner) reportLanes(running map[string]*laneRun) {
	lm, ok := r.metrics.(LaneMetrics)
	if !ok {
		return
	}
	for _, l := range r.lanes {
		on := running[l] != nil
		lm.SetLaneAssigned(l, on)
		if !on {
			lm.SetLaneRole(l, "stopped", "")
		}
	}
}
