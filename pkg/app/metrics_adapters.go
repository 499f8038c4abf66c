package app

import (
	"time"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/metrics"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/tailer"
)

// The metrics adapters live here, where the components are wired, so
// that pkg/metrics imports neither the tailer nor the sink: metrics
// records names, counts and times, and these translate the components'
// reports (a sink.Result, a fault.Class, a checkpoint.Takeover) into them.
// Every other method of the components' Metrics interfaces is metrics'
// own, promoted from the embedded recorder.

// tailerMetrics adapts metrics.TailerMetrics to tailer.Metrics.
type tailerMetrics struct{ metrics.TailerMetrics }

var _ tailer.Metrics = tailerMetrics{}

// forTailer is the tailer's Metrics: m, with h's liveness "tailer". The
// takeover reasons' series exist from the start, at 0, so increase() sees
// the first takeover.
func forTailer(m *metrics.Metrics, h *metrics.Health) tailer.Metrics {
	return tailerMetrics{m.ForTailer(h, checkpoint.TakeoverExpired, checkpoint.TakeoverReleased)}
}

// TookOver implements tailer.Metrics.
func (t tailerMetrics) TookOver(tk checkpoint.Takeover) { t.TakenOver(tk.Reason, tk.At) }

// sinkMetrics adapts metrics.SinkMetrics to sink.Metrics and
// sink.LaneMetrics (a lane runner finds the lane gauges by asserting
// sink.LaneMetrics: without them lanes would share one role gauge).
type sinkMetrics struct{ metrics.SinkMetrics }

var (
	_ sink.Metrics     = sinkMetrics{}
	_ sink.LaneMetrics = sinkMetrics{}
)

// forSink is the sink's Metrics: m, with h's liveness "sink".
func forSink(m *metrics.Metrics, h *metrics.Health) sink.Metrics {
	return sinkMetrics{m.ForSink(h)}
}

// BatchApplied implements sink.Metrics: the batch's outcomes by
// collection and operation, its size, duration and newest cluster time.
func (s sinkMetrics) BatchApplied(res sink.Result, size int, took time.Duration) {
	for k, n := range res.Counts {
		s.Outcome(k.Collection, k.Op, k.Outcome, n)
	}
	s.Batch(size, took, res.LastClusterTime)
}

// Retry implements sink.Metrics.
func (s sinkMetrics) Retry(class fault.Class) { s.CountRetry(class.String()) }
