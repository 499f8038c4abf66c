package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tailerState holds the tailer's fence and full-stream metrics. They carry
// no labels: the holder's name goes to /readyz and the log, never into a
// label (one series per instance name would grow without bound).
type tailerState struct {
	standby      prometheus.Gauge
	streamFull   prometheus.Gauge
	fullRefusals prometheus.Counter
	failing      *failingGauges
	// lease: tailerlease.go.
	lease *tailerLease
}

// tailerStateNames are the metrics of tailerState, for Names.
var tailerStateNames = []string{
	"cdc_tailer_standby",
	"cdc_stream_full",
	"cdc_stream_full_refusals_total",
}

func init() { Names = append(append(Names, tailerStateNames...), failingNames("cdc_tailer")...) }

func newTailerState(reg prometheus.Registerer) *tailerState {
	s := &tailerState{
		standby: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_tailer_standby",
			Help: "1 while this tailer stands by because another one writes the checkpoint, 0 while it writes it (or runs no tailer)."}),
		streamFull: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_stream_full",
			Help: "1 while the change stream refuses the tailer's publishes because it is full (max_bytes or max_msgs, discard policy new), else 0."}),
		fullRefusals: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdc_stream_full_refusals_total",
			Help: "Publish attempts the change stream refused because it was full; each is retried from the checkpoint with backoff."}),
	}
	reg.MustRegister(s.standby, s.streamFull, s.fullRefusals)
	s.failing = newFailing(reg, "cdc_tailer",
		"1 once the tailer's change stream or publishes have failed with retried errors for longer than tailer.failing_after (the tailer is unready), else 0.",
		"Since when the tailer's retried errors have lasted (Unix seconds; 0 while it works).")
	s.lease = newTailerLease(reg)
	return s
}

// Standby reports whether the tailer stands by: a standby is ready and names the
// holder in /readyz.
func (t TailerMetrics) Standby(standby bool, holder string) {
	if !standby {
		t.m.tailerState.standby.Set(0)
		t.h.State("tailer", "", true)
		return
	}
	t.m.tailerState.standby.Set(1)
	t.h.State("tailer", "standby (held by "+holder+")", true)
}

// StreamFull reports a full stream: while the stream is full the
// tailer is not ready (it publishes nothing) and /readyz says why.
func (t TailerMetrics) StreamFull(full bool) {
	if !full {
		t.m.tailerState.streamFull.Set(0)
		t.h.State("tailer", "", true)
		return
	}
	t.m.tailerState.streamFull.Set(1)
	t.m.tailerState.fullRefusals.Inc()
	t.h.State("tailer", "paused: the change stream is full (publishes refused until the sink frees space or the limit is raised)", false)
}

// Failing reports the tailer's retried errors: past tailer.failing_after the tailer
// is unready and /readyz says since when (the error itself is logged).
func (t TailerMetrics) Failing(since time.Time, failing bool, cause string) {
	t.m.tailerState.failing.report(t.h, "tailer", since, failing, cause)
}
