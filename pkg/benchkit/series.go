package benchkit

import (
	"math"
	"sort"
	"time"
)

// LagPoint is one row write of the lag phase.
type LagPoint struct {
	// T is when Postgres wrote the row, in seconds since the paced
	// writing started; Ms its lag behind the document's write stamp.
	T  float64
	Ms float64
}

// LagOf is the distribution of lags (nearest-rank percentiles).
func LagOf(lags []LagPoint) Lag {
	ms := make([]float64, len(lags))
	for i, l := range lags {
		ms[i] = l.Ms
	}
	sort.Float64s(ms)
	return Lag{Measured: len(ms), P50Ms: percentile(ms, 0.50), P95Ms: percentile(ms, 0.95),
		P99Ms: percentile(ms, 0.99), MaxMs: percentile(ms, 1)}
}

// percentile is the nearest-rank q-quantile of sorted xs (0 if empty).
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// LagSeries are the per-second p50 and p99 of the lag phase, by the
// second Postgres wrote the rows in.
func LagSeries(lags []LagPoint) []Series {
	buckets := map[int][]float64{}
	for _, l := range lags {
		s := int(math.Floor(l.T))
		buckets[s] = append(buckets[s], l.Ms)
	}
	secs := make([]int, 0, len(buckets))
	for s := range buckets {
		secs = append(secs, s)
	}
	sort.Ints(secs)
	p50 := Series{Name: "lag p50", Kind: "lag"}
	p99 := Series{Name: "lag p99", Kind: "lag"}
	for _, s := range secs {
		xs := buckets[s]
		sort.Float64s(xs)
		t := float64(s) + 0.5
		p50.Points = append(p50.Points, Point{T: t, V: percentile(xs, 0.5)})
		p99.Points = append(p99.Points, Point{T: t, V: percentile(xs, 0.99)})
	}
	return []Series{p50, p99}
}

// ThroughputSeries is the rate of a phase's counter over time, each point
// averaged over the window before it.
func ThroughputSeries(name string, samples []Sample, window time.Duration) Series {
	out := Series{Name: name, Kind: "throughput"}
	w := window.Seconds()
	j := 0
	for i := 1; i < len(samples); i++ {
		for j+1 < i && samples[j+1].T <= samples[i].T-w {
			j++
		}
		dt := samples[i].T - samples[j].T
		if dt <= 0 {
			continue
		}
		out.Points = append(out.Points, Point{T: samples[i].T, V: float64(samples[i].Count-samples[j].Count) / dt})
	}
	return out
}

// RSSSeries is a phase's process RSS over time, in MB.
func RSSSeries(name string, samples []Sample) Series {
	out := Series{Name: name, Kind: "rss"}
	for _, s := range samples {
		if s.RSS > 0 {
			out.Points = append(out.Points, Point{T: s.T, V: float64(s.RSS) / (1 << 20)})
		}
	}
	return out
}
