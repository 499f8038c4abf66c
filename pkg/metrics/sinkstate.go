package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amanat/cdc/pkg/state"
)

// sinkState holds the sink's fence, deferred-events and failure gauges.
type sinkState struct {
	deferredEvents *prometheus.GaugeVec
	deferredBytes  prometheus.Gauge
	deferredOldest prometheus.Gauge
	active         prometheus.Gauge
	failing        *failingGauges
	openDLs        *prometheus.GaugeVec
}

// sinkStateNames are the metrics of sinkState, for Names.
var sinkStateNames = []string{
	"cdc_sink_deferred_events",
	"cdc_sink_deferred_bytes",
	"cdc_sink_deferred_oldest_timestamp_seconds",
	"cdc_sink_active",
	"cdc_dead_letters_open",
}

func init() { Names = append(append(Names, sinkStateNames...), failingNames("cdc_sink")...) }

func newSinkState(reg prometheus.Registerer) *sinkState {
	s := &sinkState{
		deferredEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdc_sink_deferred_events",
			Help: "Events the position has passed but that are set aside in cdc.deferred_events, by kind: wait (a parent under policy wait has not arrived), txn (part of an incomplete Mongo transaction)."}, []string{"kind"}),
		deferredBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_sink_deferred_bytes",
			Help: "Bytes of the events set aside in cdc.deferred_events."}),
		deferredOldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_sink_deferred_oldest_timestamp_seconds",
			Help: "When the oldest deferred event was first set aside (Unix seconds; 0 when none): its age growing means the deferred events are not moving."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_sink_active",
			Help: "1 while this instance holds the sink consumer's fence and applies, 0 while it stands by."}),
		failing: newFailing(reg, "cdc_sink",
			"1 once batches have failed with retryable errors for longer than sink.failing_after (the sink is unready), else 0.",
			"Since when batches have been failing (Unix seconds; 0 while they apply)."),
	}
	s.openDLs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdc_dead_letters_open",
		Help: "Open dead letters per collection (cdc.dead_letters with status open; read every 30 s by the active sink): documents not replicated until cdc dlq retry or drop."}, []string{"collection"})
	reg.MustRegister(s.deferredEvents, s.deferredBytes, s.deferredOldest, s.active, s.openDLs)
	return s
}

// SetDeferred records what is set aside in cdc.deferred_events.
func (s SinkMetrics) SetDeferred(st state.DeferredStats) {
	g := s.m.sinkState
	g.deferredEvents.WithLabelValues("wait").Set(float64(st.Waiting))
	g.deferredEvents.WithLabelValues("txn").Set(float64(st.TxnParts))
	g.deferredBytes.Set(float64(st.Bytes))
	s.m.waiting.Set(float64(st.Waiting))
	if st.Oldest.IsZero() {
		g.deferredOldest.Set(0)
	} else {
		g.deferredOldest.Set(float64(st.Oldest.Unix()))
	}
}

// SetRole records whether this instance applies ("active") or stands by;
// a standby is ready and names the holder in /readyz.
func (s SinkMetrics) SetRole(role, holder string) {
	if role == "active" {
		s.m.sinkState.active.Set(1)
		s.h.State("sink", "", true)
		return
	}
	s.m.sinkState.active.Set(0)
	s.h.State("sink", "standby (consumer held by "+holder+")", true)
}

// SetFailing reports since when batches have been failing: /readyz
// shows it from the first failed batch, and the sink turns unready once
// failing is true (past sink.failing_after).
func (s SinkMetrics) SetFailing(since time.Time, failing bool, cause string) {
	s.m.sinkState.failing.report(s.h, "sink", since, failing, cause)
}

// SetOpenDeadLetters records the open dead letters: one series per collection
// the sink reports (every replicated one, 0 once resolved, so the alert
// clears).
func (s SinkMetrics) SetOpenDeadLetters(open map[string]int64) {
	for coll, n := range open {
		s.m.sinkState.openDLs.WithLabelValues(coll).Set(float64(n))
	}
}
