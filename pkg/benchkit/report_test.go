package benchkit_test

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/benchkit"
)

// validReport is a plausible report of a small run.
func validReport() *benchkit.Report {
	cpu := func(names ...string) []benchkit.ProcessCPU {
		var out []benchkit.ProcessCPU
		for i, n := range names {
			out = append(out, benchkit.ProcessCPU{Process: n, Seconds: float64(i+1) * 0.5, PerThousand: float64(i+1) * 0.05})
		}
		return out
	}
	mem := benchkit.Memory{PeakMB: 120, SteadyMB: 100, EndMB: 101, GrowthMB: 2}
	drain := func(events int, rate float64, procs ...string) benchkit.Drain {
		return benchkit.Drain{Events: events, Seconds: float64(events) / rate, Rate: rate, SustainedRate: rate * 1.02,
			RSS: mem, CPU: cpu(procs...)}
	}
	ceiling := func(rate float64) benchkit.Ceiling {
		return benchkit.Ceiling{Events: 2000, Seconds: 2000 / rate, Rate: rate, CPU: cpu("nats-server", "harness+mongo")}
	}
	byOp := map[string]int{"users.insert": 900, "users.update": 800, "users.delete": 20, "purchaseRequests.insert": 1000,
		"purchaseRequests.update": 1500, "purchaseRequests.delete": 30, "payments.insert": 400, "payments.update": 350, "fundsLedger.insert": 1000}
	events := 0
	for _, n := range byOp {
		events += n
	}
	r := &benchkit.Report{
		Schema: benchkit.ReportSchema, StartedAt: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), WallSeconds: 30,
		Machine: benchkit.Machine{CPUs: 2, GoVersion: "go1.27.3", OS: "linux", Arch: "amd64", Kernel: "6.1", PostgresVersion: "15.18",
			PostgresFsync: "on", Load1AtStart: 0.5},
		Knobs: benchkit.Knobs{Seed: 1, BacklogEvents: events, StageEvents: 2000, LagRate: 2000, LagSeconds: 3, RawAppliers: 4, SampleIntervalS: 0.05},
		Workload: benchkit.WorkloadReport{
			Stats: benchkit.Stats{Events: events, Transactions: 500, TxnEvents: 1500, ByOp: byOp, ByAction: map[string]int{"request.settle": 250},
				Live:          map[string]int{"users": 880, "purchaseRequests": 970, "payments": 400, "fundsLedger": 1000},
				InsertedBytes: map[string]int64{}, Inserted: map[string]int{}},
			Sellers:         50,
			AvgDocBytes:     map[string]float64{"users": 800, "purchaseRequests": 1230, "payments": 660, "fundsLedger": 430},
			AvgPayloadBytes: map[string]float64{"users": 1140, "purchaseRequests": 1900, "payments": 1140, "fundsLedger": 790},
			Writer:          benchkit.WriterStats{Ops: 4000, Events: events, BulkWrites: 300, Transactions: 500}, MongoWriteSeconds: 0.6,
			StageEvents: 2000, StageWriteSeconds: 0.2,
		},
		EndToEnd:         drain(2000, 3000, "cdc run", "postgres"),
		EndToEndExternal: drain(2000, 2800, "cdc run", "nats-server", "postgres"),
		Publish:          drain(2000, 15000, "cdc tail", "nats-server"),
		Apply:            drain(2000, 3500, "cdc sink", "nats-server", "postgres"),
		Backlog:          drain(events, 3300, "cdc run", "postgres"),
		Ceilings: benchkit.Ceilings{Events: 2000, Partitions: 4, RawPublish: ceiling(40000), RawCopy: ceiling(10000),
			RawPipeline: ceiling(12000)},
		Lag: benchkit.Lag{OfferedRate: 2000, AchievedRate: 1999, Seconds: 3, Events: 6000, Measured: 5500, P50Ms: 50, P95Ms: 90,
			P99Ms: 120, MaxMs: 200, GeneratorMaxLateMs: 12, RSS: mem, CPU: cpu("cdc run", "postgres")},
		Series: []benchkit.Series{
			{Name: "cdc run (embedded NATS)", Kind: "throughput", Points: []benchkit.Point{{T: 1, V: 3000}, {T: 2, V: 3100}}},
			{Name: "cdc run (embedded NATS)", Kind: "rss", Points: []benchkit.Point{{T: 1, V: 90}, {T: 2, V: 100}}},
			{Name: "cdc tail", Kind: "publish", Points: []benchkit.Point{{T: 1, V: 20000}, {T: 2, V: 21000}}},
			{Name: "lag p50", Kind: "lag", Points: []benchkit.Point{{T: 0.5, V: 50}, {T: 1.5, V: 55}}},
			{Name: "lag p99", Kind: "lag", Points: []benchkit.Point{{T: 0.5, V: 110}, {T: 1.5, V: 120}}},
		},
	}
	r.ComputeRatios()
	r.ComputeTargets()
	return r
}

func TestCheckAcceptsAPlausibleReport(t *testing.T) {
	if p := validReport().Check(); len(p) > 0 {
		t.Fatalf("a plausible report has problems:\n%s", strings.Join(p, "\n"))
	}
}

// TestCheckFindsEachProblem: every kind of missing or implausible number
// is named.
func TestCheckFindsEachProblem(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(r *benchkit.Report)
		want   string
	}{
		{"no end-to-end rate", func(r *benchkit.Report) { r.EndToEnd.SustainedRate = 0 }, "end_to_end:"},
		{"a stage over other events", func(r *benchkit.Report) { r.Apply.Events = 1999 }, "apply.events = 1999"},
		{"a backlog not drained whole", func(r *benchkit.Report) { r.Backlog.Events = 10 }, "backlog.events = 10"},
		{"no stage backlog", func(r *benchkit.Report) { r.Workload.StageEvents = 0 }, "stage_events 0"},
		{"ratio out of range", func(r *benchkit.Report) { r.Ratios.Publish = 7 }, "ratios.publish = 7"},
		{"zero ratio", func(r *benchkit.Report) { r.Ratios.Apply = 0 }, "ratios.apply = 0"},
		{"percentiles unordered", func(r *benchkit.Report) { r.Lag.P99Ms = 10 }, "lag percentiles not ordered"},
		{"no RSS", func(r *benchkit.Report) { r.Apply.RSS.PeakMB = 0 }, "apply.rss"},
		{"steady above the peak", func(r *benchkit.Report) { r.Publish.RSS.SteadyMB = 500 }, "publish.rss"},
		{"no CPU", func(r *benchkit.Report) { r.EndToEndExternal.CPU = nil }, "end_to_end_external_nats.cpu"},
		{"dead letters", func(r *benchkit.Report) { r.Apply.DeadLetters = 3 }, "apply: 3 dead letters"},
		{"no ceiling", func(r *benchkit.Report) { r.Ceilings.RawCopy.Rate = 0 }, "ceilings.raw_copy.rate"},
		{"ceiling over other events", func(r *benchkit.Report) { r.Ceilings.RawPipeline.Events = 5 }, "ceilings.raw_pipeline.events"},
		{"no deletes", func(r *benchkit.Report) { r.Workload.ByOp["users.delete"] = 0 }, "workload.by_op[users.delete]"},
		{"no transactions", func(r *benchkit.Report) { r.Workload.Transactions = 0 }, "workload:"},
		{"tiny documents", func(r *benchkit.Report) { r.Workload.AvgDocBytes["payments"] = 20 }, "payments documents"},
		{"no lag series", func(r *benchkit.Report) { r.Series = r.Series[:3] }, "no lag series"},
		{"no publish series", func(r *benchkit.Report) { r.Series = append(r.Series[:2], r.Series[3:]...) }, "no publish series"},
		{"no fsync setting", func(r *benchkit.Report) { r.Machine.PostgresFsync = "" }, "machine.postgres_fsync is empty"},
		{"targets missing", func(r *benchkit.Report) { r.Targets = r.Targets[:3] }, "3 targets, want 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validReport()
			tc.mutate(r)
			p := r.Check()
			for _, s := range p {
				if strings.Contains(s, tc.want) {
					return
				}
			}
			t.Fatalf("no problem naming %q; got %q", tc.want, p)
		})
	}
}

// TestReportJSONRoundTrip: the JSON holds every field, reads back
// strictly, and a missing or unknown field is caught.
func TestReportJSONRoundTrip(t *testing.T) {
	r := validReport()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := benchkit.MissingFields(data)
	if err != nil || len(missing) > 0 {
		t.Fatalf("complete report: missing %v (%v)", missing, err)
	}
	back, err := benchkit.ReadReport(data)
	if err != nil {
		t.Fatal(err)
	}
	if p := back.Check(); len(p) > 0 {
		t.Fatalf("read back: %v", p)
	}

	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	delete(m["lag"].(map[string]any), "p95_ms")
	delete(m["end_to_end"].(map[string]any)["rss"].(map[string]any), "peak_mb")
	delete(m["workload"].(map[string]any), "transactions") // a field of the embedded Stats
	cut, _ := json.Marshal(m)
	missing, err = benchkit.MissingFields(cut)
	if err != nil {
		t.Fatal(err)
	}
	if want := "end_to_end.rss.peak_mb lag.p95_ms workload.transactions"; strings.Join(sortedCopy(missing), " ") != want {
		t.Fatalf("missing %v, want %s", missing, want)
	}

	m["surprise"] = 1
	extra, _ := json.Marshal(m)
	if _, err := benchkit.ReadReport(extra); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Fatalf("an unknown field was accepted: %v", err)
	}
}

func sortedCopy(xs []string) []string {
	out := append([]string(nil), xs...)
	sort.Strings(out)
	return out
}

// TestTargetsAndRatios: ratios divide sustained rates by the ceilings, and
// each target's verdict follows its operator.
func TestTargetsAndRatios(t *testing.T) {
	r := validReport()
	if got, want := r.Ratios.Apply, r.Apply.SustainedRate/r.Ceilings.RawCopy.Rate; got != want {
		t.Fatalf("apply ratio %v, want %v", got, want)
	}
	verdicts := map[string]bool{}
	for _, tg := range r.Targets {
		verdicts[tg.Name] = tg.Met
	}
	want := map[string]bool{
		"end to end / raw JetStream->Postgres ceiling": false, // 3060 / 12000
		"end to end, absolute":                         false,
		"sink apply / raw COPY":                        false, // 3570 / 10000
		"tailer publish / raw publish":                 false, // 15300 / 40000
		"lag p99 at the offered rate":                  true,  // 120 ms
		"backlog peak RSS (cdc run, embedded NATS)":    true,  // 120 MB
		"backlog RSS growth / steady RSS":              true,  // 2 / 100
	}
	for name, met := range want {
		if got, ok := verdicts[name]; !ok || got != met {
			t.Errorf("target %q: met %v (present %v), want %v", name, got, ok, met)
		}
	}
}

// TestTableNamesEveryStage: the table a person reads shows each stage,
// ceiling, ratio, percentile, memory row, CPU row and target.
func TestTableNamesEveryStage(t *testing.T) {
	out := validReport().Table()
	for _, want := range []string{"end to end: cdc run, embedded NATS", "end to end: cdc run, external NATS", "publish: cdc tail",
		"apply: cdc sink", "raw COPY, 1 conn", "raw async publish", "raw JetStream->PG x4", "0.36", "6,000-event backlog", "p50 50 ms", "p99 120 ms",
		"VmHWM", "CPU s per 1,000 events", "ceiling: raw COPY", "targets (issue 13)", "MISSED", "met", "fsync on"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if lines := bytes.Count([]byte(out), []byte("\n")); lines < 30 {
		t.Errorf("the table has %d lines:\n%s", lines, out)
	}
}
