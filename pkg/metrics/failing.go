package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// failingGauges are a component's "failing" pair: <prefix>_failing (1
// once retried errors have lasted past the component's failing_after, the
// alert's input) and <prefix>_failing_since_timestamp_seconds. The sink and
// the tailer each have one.
type failingGauges struct {
	failing prometheus.Gauge
	since   prometheus.Gauge
}

// failingNames are the metric names of newFailing(prefix, …), for Names.
func failingNames(prefix string) []string {
	return []string{prefix + "_failing", prefix + "_failing_since_timestamp_seconds"}
}

func newFailing(reg prometheus.Registerer, prefix, failingHelp, sinceHelp string) *failingGauges {
	n := failingNames(prefix)
	f := &failingGauges{
		failing: prometheus.NewGauge(prometheus.GaugeOpts{Name: n[0], Help: failingHelp}),
		since:   prometheus.NewGauge(prometheus.GaugeOpts{Name: n[1], Help: sinceHelp}),
	}
	reg.MustRegister(f.failing, f.since)
	return f
}

// report sets the gauges and part's /readyz line: since zero means the
// component works again; failing (past failing_after) makes it unready.
// The cause is not shown on /readyz: it is an error's text, which names
// users, databases and hosts (Health); the component logs it with every
// retry.
func (f *failingGauges) report(h *Health, part string, since time.Time, failing bool, _ string) {
	if since.IsZero() {
		f.failing.Set(0)
		f.since.Set(0)
		h.State(part, "", true)
		return
	}
	f.since.Set(float64(since.Unix()))
	if failing {
		f.failing.Set(1)
	}
	h.State(part, "failing since "+since.UTC().Format(time.RFC3339), !failing)
}
