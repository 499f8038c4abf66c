package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amanat/cdc/pkg/event"
)

// sinkLanes holds the per-lane gauges of a sink instance running lanes
// (sink.lanes; sink.LaneMetrics). Without lanes they have no series.
type sinkLanes struct {
	assigned    *prometheus.GaugeVec
	active      *prometheus.GaugeVec
	lagEvents   *prometheus.GaugeVec
	lastApplied *prometheus.GaugeVec
	// takeovers counts this instance's acquisitions of a lane's fence
	// (a lane Sink turning active); mu guards wasActive, the last role
	// reported per lane.
	takeovers *prometheus.CounterVec
	mu        sync.Mutex
	wasActive map[string]bool
}

// LaneNames are the metrics of sink lanes (in Names too): they have
// series only when sink.lanes is configured, one per lane.
var LaneNames = sinkLaneNames

// sinkLaneNames are the metrics of sinkLanes, for Names.
var sinkLaneNames = []string{
	"cdc_sink_lane_assigned",
	"cdc_sink_lane_active",
	"cdc_sink_lane_lag_events",
	"cdc_sink_lane_last_applied_cluster_time_seconds",
	"cdc_sink_lane_takeovers_total",
}

func init() { Names = append(Names, sinkLaneNames...) }

func newSinkLanes(reg prometheus.Registerer) *sinkLanes {
	l := &sinkLanes{
		assigned: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdc_sink_lane_assigned",
			Help: "1 while the members' rendezvous assignment gives the lane to this instance (it runs the lane's sink, applying or waiting for the previous holder's fence), else 0."}, []string{"lane"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdc_sink_lane_active",
			Help: "1 while this instance holds the lane's fence and applies it, else 0. Summed over instances: 1 per lane when every lane is applied."}, []string{"lane"}),
		lagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdc_sink_lane_lag_events",
			Help: "Events in the lane's stream its sink has not acknowledged yet (reported by the instance applying the lane)."}, []string{"lane"}),
		lastApplied: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdc_sink_lane_last_applied_cluster_time_seconds",
			Help: "Cluster time (seconds) of the newest event the lane's sink applied (reported by the instance applying the lane)."}, []string{"lane"}),
	}
	l.takeovers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_sink_lane_takeovers_total",
		Help: "Times this instance took a lane's fence and began applying it (a start, a rebalance, a dead holder's lane). Summed over instances per lane it counts the lane's changes of holder: CDCSinkLaneFlapping."}, []string{"lane"})
	l.wasActive = map[string]bool{}
	reg.MustRegister(l.assigned, l.active, l.lagEvents, l.lastApplied, l.takeovers)
	return l
}

// SetLaneAssigned reports whether the lanes' assignment gives lane to
// this instance (sink.LaneMetrics).
func (s SinkMetrics) SetLaneAssigned(lane string, assigned bool) {
	s.m.sinkLanes.assigned.WithLabelValues(lane).Set(b2f(assigned))
}

// SetLaneRole reports whether this instance applies lane ("active") or
// not; a change to active counts a takeover (sink.LaneMetrics).
func (s SinkMetrics) SetLaneRole(lane, role, _ string) {
	l := s.m.sinkLanes
	active := role == "active"
	l.active.WithLabelValues(lane).Set(b2f(active))
	l.mu.Lock()
	defer l.mu.Unlock()
	if active && !l.wasActive[lane] {
		l.takeovers.WithLabelValues(lane).Inc()
	}
	l.wasActive[lane] = active
}

// SetLaneLag reports lane's pending events and newest applied cluster
// time (sink.LaneMetrics).
func (s SinkMetrics) SetLaneLag(lane string, pending uint64, lastApplied event.ClusterTime) {
	s.m.sinkLanes.lagEvents.WithLabelValues(lane).Set(float64(pending))
	if lastApplied.T > 0 {
		s.m.sinkLanes.lastApplied.WithLabelValues(lane).Set(float64(lastApplied.T))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
