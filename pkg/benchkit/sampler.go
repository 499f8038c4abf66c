package benchkit

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Sample is one reading during a phase.
type Sample struct {
	// T is seconds since the phase started.
	T float64 `json:"t"`
	// Count is the phase's progress counter: events applied (or
	// published, for the tail phase) so far.
	Count int64 `json:"count"`
	// RSS is the watched process's VmRSS in bytes (0 without one).
	RSS int64 `json:"rss"`
}

// CPUMeter follows named processes' CPU time from the moment each is
// added. Readings are kept, so a process that exits after its last
// reading still reports it.
type CPUMeter struct {
	mu      sync.Mutex
	entries []*cpuEntry
}

type cpuEntry struct {
	name string
	read func() (float64, error)
	base float64
	last float64
}

// NewCPUMeter returns an empty meter.
func NewCPUMeter() *CPUMeter { return &CPUMeter{} }

// Process follows pid's own CPU time.
func (m *CPUMeter) Process(name string, pid int) error {
	base, err := CPUSeconds(pid)
	if err != nil {
		return err
	}
	m.add(&cpuEntry{name: name, read: func() (float64, error) { return CPUSeconds(pid) }, base: base, last: base})
	return nil
}

// Tree follows root's and its children's CPU time (TreeCPU).
func (m *CPUMeter) Tree(name string, root int) error {
	t, err := StartTreeCPU(root)
	if err != nil {
		return err
	}
	m.add(&cpuEntry{name: name, read: t.Seconds})
	return nil
}

func (m *CPUMeter) add(e *cpuEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries = append(m.entries, e)
}

// Sample reads every process now; one that cannot be read (it exited)
// keeps its last reading.
func (m *CPUMeter) Sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries {
		if v, err := e.read(); err == nil {
			e.last = v
		}
	}
}

// Result is each process's CPU seconds since it was added, per 1,000
// events of events.
func (m *CPUMeter) Result(events int) []ProcessCPU {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ProcessCPU, 0, len(m.entries))
	for _, e := range m.entries {
		s := max(e.last-e.base, 0)
		p := ProcessCPU{Process: e.name, Seconds: s}
		if events > 0 {
			p.PerThousand = s / float64(events) * 1000
		}
		out = append(out, p)
	}
	return out
}

// Sampler reads a phase's progress counter, a process's RSS and a
// CPUMeter every interval until Stop.
type Sampler struct {
	start    time.Time
	interval time.Duration
	pid      int
	count    func(context.Context) (int64, error)
	cpu      *CPUMeter

	mu      sync.Mutex
	samples []Sample
	lastErr error
	cancel  context.CancelFunc
	done    chan struct{}
}

// StartSampler starts sampling now (the phase's time 0): count is the
// progress counter (a failed read keeps the previous value), pid the
// process whose RSS is read (0: none), cpu the meter to advance (nil:
// none).
func StartSampler(ctx context.Context, interval time.Duration, pid int, count func(context.Context) (int64, error), cpu *CPUMeter) *Sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &Sampler{start: time.Now(), interval: interval, pid: pid, count: count, cpu: cpu, cancel: cancel, done: make(chan struct{})}
	go s.loop(ctx)
	return s
}

func (s *Sampler) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.take(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Sampler) take(ctx context.Context) {
	at := time.Since(s.start).Seconds()
	var rss int64
	if s.pid > 0 {
		rss, _, _ = ReadMemory(s.pid)
	}
	if s.cpu != nil {
		s.cpu.Sample()
	}
	n, err := s.count(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		s.lastErr = err
		if len(s.samples) > 0 {
			n = s.samples[len(s.samples)-1].Count
		}
	}
	s.samples = append(s.samples, Sample{T: at, Count: n, RSS: rss})
}

// Latest is the newest sample and the last counter error (nil if none).
func (s *Sampler) Latest() (Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return Sample{}, s.lastErr
	}
	return s.samples[len(s.samples)-1], s.lastErr
}

// Stop takes a last sample, stops and returns every sample.
func (s *Sampler) Stop(ctx context.Context) []Sample {
	s.cancel()
	<-s.done
	s.take(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...)
}

// DrainOf summarizes a drain of events from its samples: the time the
// counter first reached events (interpolated between samples), the rate
// over it, the sustained rate between 10% and 90% of the events (the
// drain rate when the samples are too coarse to tell the two apart), and
// the RSS (hwm is the process's VmHWM read at the end).
func DrainOf(samples []Sample, events int, hwm int64) Drain {
	d := Drain{Events: events}
	end := crossing(samples, float64(events))
	if end <= 0 {
		return d
	}
	d.Seconds = end
	d.Rate = float64(events) / end
	d.SustainedRate = d.Rate
	t10, t90 := crossing(samples, 0.1*float64(events)), crossing(samples, 0.9*float64(events))
	if t90 > t10 && len(samples) >= 4 {
		d.SustainedRate = 0.8 * float64(events) / (t90 - t10)
	}
	d.RSS = memoryOf(samples, events, hwm)
	return d
}

// crossing is the time the counter first reached target, linearly
// interpolated between the two samples around it (0: never).
func crossing(samples []Sample, target float64) float64 {
	for i, s := range samples {
		if float64(s.Count) < target {
			continue
		}
		if i == 0 {
			return s.T
		}
		p := samples[i-1]
		if s.Count == p.Count {
			return s.T
		}
		return p.T + (s.T-p.T)*(target-float64(p.Count))/float64(s.Count-p.Count)
	}
	return 0
}

// memoryOf: the peak is VmHWM; steady is the median VmRSS once half the
// events were through (the level a long drain settles at); growth is the
// mean of the last quarter of the samples minus that of the second
// (flat memory is near 0).
func memoryOf(samples []Sample, events int, hwm int64) Memory {
	const mb = 1 << 20
	var late, all []float64
	for _, s := range samples {
		if s.RSS <= 0 {
			continue
		}
		all = append(all, float64(s.RSS))
		if s.Count >= int64(events)/2 {
			late = append(late, float64(s.RSS))
		}
	}
	m := Memory{PeakMB: float64(hwm) / mb}
	if len(all) == 0 {
		return m
	}
	if len(late) == 0 {
		late = all
	}
	m.SteadyMB = median(late) / mb
	m.EndMB = all[len(all)-1] / mb
	q := len(all) / 4
	if q > 0 {
		m.GrowthMB = (mean(all[len(all)-q:]) - mean(all[q:2*q])) / mb
	}
	return m
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func mean(xs []float64) float64 {
	var t float64
	for _, x := range xs {
		t += x
	}
	return t / float64(max(len(xs), 1))
}
