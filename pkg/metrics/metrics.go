// Package metrics exports the replicator's Prometheus metrics and serves
// /metrics, /healthz and /readyz.
//
// Every metric name is listed in Names; deploy/ (alert rules, dashboard)
// may reference only those, and a test checks it.
package metrics

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/amanat/cdc/pkg/event"
)

// Metrics holds the registry; ForTailer, ForSink and ForVerify return
// what each component records. This package imports neither the tailer
// nor the sink (pkg/archtest checks it): it speaks in names, counts and
// times, and pkg/app, which wires the components, adapts these to their
// Metrics interfaces (pkg/app/metrics_adapters.go).
type Metrics struct {
	Registry *prometheus.Registry

	read            *prometheus.CounterVec
	published       *prometheus.CounterVec
	outcomes        *prometheus.CounterVec
	batchSize       prometheus.Histogram
	applySeconds    prometheus.Histogram
	retries         *prometheus.CounterVec
	lagSeconds      prometheus.Gauge
	lagEvents       prometheus.Gauge
	lastApplied     prometheus.Gauge
	checkpointTime  prometheus.Gauge
	checkpointSaved prometheus.Gauge
	headroom        prometheus.Gauge
	waiting         prometheus.Gauge
	sinkState       *sinkState
	sinkLanes       *sinkLanes
	tailerState     *tailerState
	now             func() time.Time
}

// Names of every metric this package exports (without the histogram
// suffixes _bucket, _sum and _count).
var Names = []string{
	"cdc_events_read_total",
	"cdc_events_published_total",
	"cdc_events_total",
	"cdc_sink_batch_events",
	"cdc_sink_apply_seconds",
	"cdc_retries_total",
	"cdc_replication_lag_seconds",
	"cdc_replication_lag_events",
	"cdc_sink_last_applied_cluster_time_seconds",
	"cdc_tailer_checkpoint_cluster_time_seconds",
	"cdc_tailer_checkpoint_saved_timestamp_seconds",
	"cdc_oplog_headroom_seconds",
	"cdc_sink_waiting_events",
}

// New registers every metric (and the Go and process collectors).
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) prometheus.Collector { r.MustRegister(c); return c }
	m := &Metrics{Registry: r, now: time.Now}
	m.read = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_events_read_total",
		Help: "Change events read from the MongoDB change stream."}, []string{"collection", "operation"})).(*prometheus.CounterVec)
	m.published = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_events_published_total",
		Help: "Events acknowledged by JetStream."}, []string{"collection"})).(*prometheus.CounterVec)
	m.outcomes = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_events_total",
		Help: "Events handled by the sink, by outcome: applied, skipped (version guard, duplicate or superseded), dead_lettered, parked, waiting (a retry each time)."},
		[]string{"collection", "operation", "outcome"})).(*prometheus.CounterVec)
	m.batchSize = f(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cdc_sink_batch_events",
		Help: "Events per applied Postgres transaction.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)})).(prometheus.Histogram)
	m.applySeconds = f(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cdc_sink_apply_seconds",
		Help: "Time to apply and commit one batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})).(prometheus.Histogram)
	m.retries = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_retries_total",
		Help: "Retries after errors, by component and error class."}, []string{"component", "class"})).(*prometheus.CounterVec)
	// Present from the start, so alerts on rate() see a zero.
	m.retries.WithLabelValues("tailer", "retryable")
	for _, c := range []string{"retryable", "poison", "fatal"} {
		m.retries.WithLabelValues("sink", c)
	}
	m.lagSeconds = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_replication_lag_seconds",
		Help: "Now minus the cluster time of the newest applied event (0 when the sink has caught up with the stream)."})).(prometheus.Gauge)
	m.lagEvents = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_replication_lag_events",
		Help: "Events in the stream the sink has not acknowledged yet."})).(prometheus.Gauge)
	m.lastApplied = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_sink_last_applied_cluster_time_seconds",
		Help: "Cluster time (seconds) of the newest event applied."})).(prometheus.Gauge)
	m.checkpointTime = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_tailer_checkpoint_cluster_time_seconds",
		Help: "Cluster time (seconds) of the tailer's saved checkpoint (its resume token's time: it advances on an idle source too)."})).(prometheus.Gauge)
	m.checkpointSaved = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_tailer_checkpoint_saved_timestamp_seconds",
		Help: "When the tailer last saved its checkpoint (Unix seconds); checkpoint age is time() minus this."})).(prometheus.Gauge)
	m.headroom = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_oplog_headroom_seconds",
		Help: "Estimated time until the tailer's checkpoint falls off the MongoDB oplog."})).(prometheus.Gauge)
	// Unknown until the first estimate (a sink-only process never has
	// one): NaN, which no threshold comparison matches, rather than a 0
	// that reads as "lost".
	m.headroom.Set(math.NaN())
	m.waiting = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_sink_waiting_events",
		Help: "Events set aside for a parent that has not arrived (policy wait)."})).(prometheus.Gauge)
	m.sinkState = newSinkState(m.Registry)
	m.sinkLanes = newSinkLanes(m.Registry)
	m.tailerState = newTailerState(m.Registry)
	return m
}

// ForTailer returns what the tailer records into m, with h's liveness
// "tailer". takeoverReasons are the reasons of the tailer's takeovers
// (checkpoint.TakeoverExpired, ...): their series of
// cdc_tailer_takeovers_total exist from now on, at 0, so increase() sees
// the first takeover.
func (m *Metrics) ForTailer(h *Health, takeoverReasons ...string) TailerMetrics {
	for _, r := range takeoverReasons {
		m.tailerState.lease.takeovers.WithLabelValues(r)
	}
	return TailerMetrics{m, h}
}

// ForSink returns what the sink records into m, with h's liveness "sink".
func (m *Metrics) ForSink(h *Health) SinkMetrics { return SinkMetrics{m, h} }

// TailerMetrics is what the tailer records (pkg/app adapts it to
// tailer.Metrics); tailerstate.go and tailerlease.go have the rest of its
// methods.
type TailerMetrics struct {
	m *Metrics
	h *Health
}

// EventRead counts an event read from the change stream.
func (t TailerMetrics) EventRead(coll string, op event.Op) {
	t.m.read.WithLabelValues(coll, string(op)).Inc()
}

// EventPublished counts an event JetStream acknowledged.
func (t TailerMetrics) EventPublished(coll string) { t.m.published.WithLabelValues(coll).Inc() }

// CheckpointSaved records the saved checkpoint's cluster time and when it
// was saved.
func (t TailerMetrics) CheckpointSaved(ct event.ClusterTime) {
	if ct.T > 0 {
		t.m.checkpointTime.Set(float64(ct.T))
	}
	t.m.checkpointSaved.Set(float64(t.m.now().Unix()))
}

// Retry counts a restart from the checkpoint after an error.
func (t TailerMetrics) Retry() { t.m.retries.WithLabelValues("tailer", "retryable").Inc() }

// Alive reports the tailer's liveness to the health checks.
func (t TailerMetrics) Alive() { t.h.Alive("tailer") }

// SinkMetrics is what the sink records (pkg/app adapts it to sink.Metrics
// and sink.LaneMetrics); sinkstate.go and sinklanes.go have the rest of
// its methods.
type SinkMetrics struct {
	m *Metrics
	h *Health
}

// Outcome adds n events of one collection and operation with one outcome
// (sink.OutcomeApplied, ...) to cdc_events_total.
func (s SinkMetrics) Outcome(coll string, op event.Op, outcome string, n int) {
	s.m.outcomes.WithLabelValues(coll, string(op), outcome).Add(float64(n))
}

// Batch records an applied batch: its size, how long it took, and the
// cluster time of its newest event (zero: none).
func (s SinkMetrics) Batch(size int, took time.Duration, lastApplied event.ClusterTime) {
	s.m.batchSize.Observe(float64(size))
	s.m.applySeconds.Observe(took.Seconds())
	if lastApplied.T > 0 {
		s.m.lastApplied.Set(float64(lastApplied.T))
	}
}

// CountRetry counts a retry after an error of the given class
// (retryable, poison or fatal: the series exist from New).
func (s SinkMetrics) CountRetry(class string) {
	s.m.retries.WithLabelValues("sink", class).Inc()
}

// Alive reports the sink's liveness to the health checks.
func (s SinkMetrics) Alive() { s.h.Alive("sink") }

// SetLag records pending events and, when any are pending, the age of the
// newest applied event (0 when caught up: an idle source is not lag).
func (s SinkMetrics) SetLag(pending uint64, lastApplied event.ClusterTime) {
	s.m.lagEvents.Set(float64(pending))
	if pending == 0 || lastApplied.T == 0 {
		s.m.lagSeconds.Set(0)
		return
	}
	s.m.lagSeconds.Set(s.m.now().Sub(lastApplied.Time()).Seconds())
}

// SetHeadroom records the oplog headroom of the tailer's checkpoint.
func (m *Metrics) SetHeadroom(d time.Duration) { m.headroom.Set(d.Seconds()) }
