package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tailerLease holds the tailer's lease metrics (pkg/tailer lease.go). Like
// tailerState they name no holder in a label: the holder is the process
// (the scrape's instance) whose cdc_tailer_lease_held_since_timestamp_seconds
// is non-zero; `cdc status` names it.
type tailerLease struct {
	heldSince    prometheus.Gauge
	lastTakeover prometheus.Gauge
	takeovers    *prometheus.CounterVec
	lapses       prometheus.Counter
}

// tailerLeaseNames are the metrics of tailerLease, for Names.
var tailerLeaseNames = []string{
	"cdc_tailer_lease_held_since_timestamp_seconds",
	"cdc_tailer_last_takeover_timestamp_seconds",
	"cdc_tailer_takeovers_total",
	"cdc_tailer_lease_lapses_total",
}

func init() { Names = append(Names, tailerLeaseNames...) }

func newTailerLease(reg prometheus.Registerer) *tailerLease {
	l := &tailerLease{
		heldSince: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_tailer_lease_held_since_timestamp_seconds",
			Help: "Since when this tailer holds the checkpoint's lease (Unix seconds: the claim that began its tenure); 0 while it does not (standby, deposed, lapsed, or no tailer)."}),
		lastTakeover: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdc_tailer_last_takeover_timestamp_seconds",
			Help: "When this tailer last took the checkpoint over from another tailer (Unix seconds); 0 if it never did."}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdc_tailer_takeovers_total",
			Help: "Takeovers of the checkpoint by this tailer from another one, by reason: expired (the holder left it unchanged for tailer.standby_takeover) or released (the holder stopped gracefully). Summed over instances: how often the holder changes."},
			[]string{"reason"}),
		lapses: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdc_tailer_lease_lapses_total",
			Help: "Times this tailer's lease ran out before it was renewed (a stall longer than the lease): it published nothing until a revision-checked write succeeded or another tailer had taken over."}),
	}
	// The reasons' series are made by ForTailer: the tailer owns them.
	reg.MustRegister(l.heldSince, l.lastTakeover, l.takeovers, l.lapses)
	return l
}

// Lease records whether this tailer holds a valid lease and since when.
func (t TailerMetrics) Lease(held bool, since time.Time) {
	if !held || since.IsZero() {
		t.m.tailerState.lease.heldSince.Set(0)
		return
	}
	t.m.tailerState.lease.heldSince.Set(float64(since.UnixMilli()) / 1e3)
}

// TakenOver counts a takeover this tailer made, for reason, at at.
func (t TailerMetrics) TakenOver(reason string, at time.Time) {
	t.m.tailerState.lease.takeovers.WithLabelValues(reason).Inc()
	t.m.tailerState.lease.lastTakeover.Set(float64(at.UnixMilli()) / 1e3)
}

// LeaseLapsed counts a lease that ran out before it was renewed.
func (t TailerMetrics) LeaseLapsed() { t.m.tailerState.lease.lapses.Inc() }
