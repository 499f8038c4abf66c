package app

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/metrics"
	"github.com/amanat/cdc/pkg/sink"
)

// sample is the value of the series of metric name whose labels include
// labels, from m's registry; ok is false when there is no such series.
func sample(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range s.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, want := range labels {
				if have[k] != want {
					continue next
				}
			}
			return value(s), true
		}
	}
	return 0, false
}

func value(s *dto.Metric) float64 {
	switch {
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Histogram != nil:
		return float64(s.Histogram.GetSampleCount())
	}
	return 0
}

// TestTailerMetricsAdapter: the tailer's takeover reasons have their
// series from the wiring on (at 0, so increase() sees the first
// takeover), and a checkpoint.Takeover counts under its reason.
func TestTailerMetricsAdapter(t *testing.T) {
	m, h := metrics.New(), metrics.NewHealth()
	tm := forTailer(m, h)
	for _, reason := range []string{checkpoint.TakeoverExpired, checkpoint.TakeoverReleased} {
		if v, ok := sample(t, m, "cdc_tailer_takeovers_total", map[string]string{"reason": reason}); !ok || v != 0 {
			t.Fatalf("cdc_tailer_takeovers_total{reason=%q} = %v (exported: %v) before any takeover; want an exported 0", reason, v, ok)
		}
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tm.TookOver(checkpoint.Takeover{At: at, Reason: checkpoint.TakeoverReleased})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"cdc_tailer_takeovers_total", map[string]string{"reason": checkpoint.TakeoverReleased}, 1},
		{"cdc_tailer_takeovers_total", map[string]string{"reason": checkpoint.TakeoverExpired}, 0},
		{"cdc_tailer_last_takeover_timestamp_seconds", nil, float64(at.Unix())},
	} {
		if v, _ := sample(t, m, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	tm.Retry()
	if v, _ := sample(t, m, "cdc_retries_total", map[string]string{"component": "tailer", "class": "retryable"}); v != 1 {
		t.Errorf("tailer retries = %v, want 1", v)
	}
}

// TestSinkMetricsAdapter: a sink.Result's counts land in cdc_events_total
// by collection, operation and outcome, a fault.Class in cdc_retries_total
// by its name, and the adapter is a sink.LaneMetrics (the lane runner
// asserts it: without it every lane would report into one role gauge).
func TestSinkMetricsAdapter(t *testing.T) {
	m, h := metrics.New(), metrics.NewHealth()
	sm := forSink(m, h)
	if _, ok := sm.(sink.LaneMetrics); !ok {
		t.Fatal("forSink's Metrics is not a sink.LaneMetrics")
	}
	sm.BatchApplied(sink.Result{
		Counts: map[sink.Count]int{
			{Collection: "users", Op: event.OpInsert, Outcome: sink.OutcomeApplied}: 3,
			{Collection: "users", Op: event.OpDelete, Outcome: sink.OutcomeSkipped}: 2,
		},
		LastClusterTime: event.ClusterTime{T: 1700000000, I: 4},
	}, 5, 20*time.Millisecond)
	sm.Retry(fault.Poison)
	sm.Retry(fault.Poison)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"cdc_events_total", map[string]string{"collection": "users", "operation": "insert", "outcome": sink.OutcomeApplied}, 3},
		{"cdc_events_total", map[string]string{"collection": "users", "operation": "delete", "outcome": sink.OutcomeSkipped}, 2},
		{"cdc_sink_batch_events", nil, 1}, // one batch observed
		{"cdc_sink_last_applied_cluster_time_seconds", nil, 1700000000},
		{"cdc_retries_total", map[string]string{"component": "sink", "class": "poison"}, 2},
		{"cdc_retries_total", map[string]string{"component": "sink", "class": "retryable"}, 0},
	} {
		if v, ok := sample(t, m, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (exported: %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
}
