package benchkit_test

import (
	"context"
	"math"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/benchkit"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// TestDrainOf: a drain at a steady 1,000 events/s after a 1 s start-up,
// sampled every 0.5 s: the rate counts the start-up, the sustained rate
// does not, crossings are interpolated, and memory is summarized.
func TestDrainOf(t *testing.T) {
	var samples []benchkit.Sample
	for i := 0; i <= 24; i++ {
		ts := float64(i) * 0.5
		n := int64(math.Max(0, (ts-1)*1000))
		samples = append(samples, benchkit.Sample{T: ts, Count: n, RSS: int64(100+i) << 20})
	}
	d := benchkit.DrainOf(samples, 10000, 200<<20)
	if !near(d.Seconds, 11) || !near(d.Rate, 10000.0/11) {
		t.Fatalf("seconds %v rate %v, want 11 and %v", d.Seconds, d.Rate, 10000.0/11)
	}
	if !near(d.SustainedRate, 1000) {
		t.Fatalf("sustained %v, want 1000", d.SustainedRate)
	}
	if d.RSS.PeakMB != 200 || d.RSS.EndMB != 124 || d.RSS.SteadyMB < 112 || d.RSS.SteadyMB > 119 || d.RSS.GrowthMB <= 0 {
		t.Fatalf("memory %+v", d.RSS)
	}
	if never := benchkit.DrainOf(samples, 1e9, 1); never.Rate != 0 || never.Seconds != 0 {
		t.Fatalf("a drain never finished has rate %v", never.Rate)
	}
}

func TestThroughputAndLagSeries(t *testing.T) {
	var samples []benchkit.Sample
	for i := 0; i <= 20; i++ {
		samples = append(samples, benchkit.Sample{T: float64(i) * 0.25, Count: int64(i) * 500, RSS: 50 << 20})
	}
	s := benchkit.ThroughputSeries("x", samples, time.Second)
	if s.Kind != "throughput" || len(s.Points) != 20 {
		t.Fatalf("series %+v", s)
	}
	for _, p := range s.Points {
		if !near(p.V, 2000) {
			t.Fatalf("rate %v at %v, want 2000", p.V, p.T)
		}
	}
	if r := benchkit.RSSSeries("x", samples); len(r.Points) != 21 || r.Points[0].V != 50 {
		t.Fatalf("rss series %+v", r)
	}

	var lags []benchkit.LagPoint
	for i := 1; i <= 1000; i++ {
		lags = append(lags, benchkit.LagPoint{T: float64(i) / 500, Ms: float64(i)})
	}
	l := benchkit.LagOf(lags)
	if l.Measured != 1000 || l.P50Ms != 500 || l.P95Ms != 950 || l.P99Ms != 990 || l.MaxMs != 1000 {
		t.Fatalf("lag %+v", l)
	}
	ls := benchkit.LagSeries(lags)
	if len(ls) != 2 || ls[0].Name != "lag p50" || len(ls[0].Points) != 3 || ls[1].Points[0].V < ls[0].Points[0].V {
		t.Fatalf("lag series %+v", ls)
	}
}

// TestProcessReadings: this process's memory and CPU, and a child's CPU
// counted by TreeCPU while it runs and after it exits.
func TestProcessReadings(t *testing.T) {
	rss, hwm, err := benchkit.ReadMemory(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss {
		t.Fatalf("own memory: rss %d hwm %d: %v", rss, hwm, err)
	}
	if _, _, err := benchkit.ReadMemory(1 << 30); err == nil {
		t.Fatal("a process that does not exist has memory")
	}
	if ppid, err := benchkit.ParentPID(os.Getpid()); err != nil || ppid != os.Getppid() {
		t.Fatalf("parent %d (%v), want %d", ppid, err, os.Getppid())
	}

	tree, err := benchkit.StartTreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sh", "-c", "while :; do :; done")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var live float64
	for live < 0.2 {
		if live, err = tree.Seconds(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			_ = child.Process.Kill()
			t.Fatalf("a busy child used %v s of CPU in 20 s", live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = child.Process.Kill()
	_ = child.Wait() // reaped: its time moves to our cutime
	after, err := tree.Seconds()
	if err != nil || after < live {
		t.Fatalf("after the child exited: %v s (%v), want at least %v", after, err, live)
	}
}

// TestSamplerAndCPUMeter: the sampler reads the counter, the RSS and the
// meter; the meter keeps a process's last reading after it exits.
func TestSamplerAndCPUMeter(t *testing.T) {
	child := exec.Command("sh", "-c", "while :; do :; done")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill() }()
	cpu := benchkit.NewCPUMeter()
	if err := cpu.Process("busy", child.Process.Pid); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	s := benchkit.StartSampler(context.Background(), 10*time.Millisecond, child.Process.Pid,
		func(context.Context) (int64, error) { return n.Add(10), nil }, cpu)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cpu.Sample()
		if res := cpu.Result(1000); res[0].Seconds >= 0.1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the busy child's CPU time did not reach 0.1 s in 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	samples := s.Stop(context.Background())
	if len(samples) < 2 || samples[len(samples)-1].Count <= samples[0].Count || samples[0].RSS <= 0 {
		t.Fatalf("samples %v", samples)
	}
	cpu.Sample()
	res := cpu.Result(1000)
	if res[0].Process != "busy" || res[0].Seconds < 0.1 || !near(res[0].PerThousand, res[0].Seconds) {
		t.Fatalf("after exit: %+v", res)
	}
}
