package benchkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"time"
)

// ReportSchema is the version of the Report JSON; a change of meaning or
// a removed field bumps it.
const ReportSchema = 1

// Report is the money-core benchmark's result, written as
// bench-out/moneycore.json (docs/benchmark.md explains every number).
// Units: rates in events per second, times in seconds, memory in MiB
// (2^20 bytes, written MB), CPU in seconds of one core.
type Report struct {
	Schema      int            `json:"schema"`
	StartedAt   time.Time      `json:"started_at"`
	WallSeconds float64        `json:"wall_seconds"`
	Machine     Machine        `json:"machine"`
	Knobs       Knobs          `json:"knobs"`
	Workload    WorkloadReport `json:"workload"`

	// The stages, each draining the stage backlog (Knobs.StageEvents
	// events, the ceilings' data): EndToEnd is `cdc run` (tailer and sink
	// in one process, the embedded NATS server inside it) from MongoDB
	// into Postgres, EndToEndExternal the same against a separate
	// nats-server process; Publish is `cdc tail` alone publishing into
	// JetStream (a separate nats-server), Apply `cdc sink` alone applying
	// that stream into Postgres afterwards.
	EndToEnd         Drain `json:"end_to_end"`
	EndToEndExternal Drain `json:"end_to_end_external_nats"`
	Publish          Drain `json:"publish"`
	Apply            Drain `json:"apply"`
	// Backlog is `cdc run` (embedded NATS) draining the whole backlog
	// (Knobs.BacklogEvents): the drain rate and the memory a large
	// backlog takes.
	Backlog Drain `json:"backlog"`

	Ceilings Ceilings `json:"ceilings"`
	Ratios   Ratios   `json:"ratios"`
	Lag      Lag      `json:"lag"`
	Targets  []Target `json:"targets"`
	// Series are the plot's lines (throughput, RSS, lag over time).
	Series []Series `json:"series"`
}

// Machine is where the run happened.
type Machine struct {
	CPUs            int     `json:"cpus"`
	GoVersion       string  `json:"go_version"`
	OS              string  `json:"os"`
	Arch            string  `json:"arch"`
	Kernel          string  `json:"kernel"`
	PostgresVersion string  `json:"postgres_version"`
	PostgresFsync   string  `json:"postgres_fsync"`
	Load1AtStart    float64 `json:"load1_at_start"`
	// ChildGOMEMLIMIT is the GOMEMLIMIT the cdc processes inherited ("":
	// none; the replicator then derives its limit from memory_limit).
	ChildGOMEMLIMIT string `json:"child_gomemlimit"`
}

// Knobs are the run's sizes (CDC_BENCH_* environment variables).
// BacklogEvents is the backlog `cdc run` (embedded NATS) drains whole;
// StageEvents the stage backlog, the same workload's first events written
// to a database of their own, that every stage and every ceiling drains,
// so that each ratio compares rates on the same events.
type Knobs struct {
	Seed            uint64  `json:"seed"`
	BacklogEvents   int     `json:"backlog_events"`
	StageEvents     int     `json:"stage_events"`
	LagRate         int     `json:"lag_rate"`
	LagSeconds      float64 `json:"lag_seconds"`
	RawAppliers     int     `json:"raw_appliers"`
	SampleIntervalS float64 `json:"sample_interval_s"`
}

// WorkloadReport describes the generated backlog.
type WorkloadReport struct {
	Stats
	Sellers int `json:"sellers"`
	// AvgDocBytes is the mean BSON size of inserted documents per
	// collection; AvgPayloadBytes the mean envelope size the tailer
	// published per collection (post-images of updates included), over
	// the stage backlog.
	AvgDocBytes     map[string]float64 `json:"avg_doc_bytes"`
	AvgPayloadBytes map[string]float64 `json:"avg_payload_bytes"`
	Writer          WriterStats        `json:"writer"`
	// MongoWriteSeconds is how long writing the backlog took.
	MongoWriteSeconds float64 `json:"mongo_write_seconds"`
	// StageEvents is the number of events of the stage backlog (a
	// transaction may take it past Knobs.StageEvents by two), written in
	// StageWriteSeconds.
	StageEvents       int     `json:"stage_events"`
	StageWriteSeconds float64 `json:"stage_write_seconds"`
}

// Drain is one process draining a backlog.
type Drain struct {
	Events int `json:"events"`
	// Seconds runs from the process's start to its last event (applied,
	// or published for the tail).
	Seconds float64 `json:"seconds"`
	// Rate is Events / Seconds (the drain rate); SustainedRate the rate
	// between 10% and 90% of the events (start-up and the tail end left
	// out), which the ratios compare with the ceilings.
	Rate          float64      `json:"rate"`
	SustainedRate float64      `json:"sustained_rate"`
	RSS           Memory       `json:"rss"`
	CPU           []ProcessCPU `json:"cpu"`
	// DeadLetters counts cdc.dead_letters rows at the end (0 in a correct
	// run).
	DeadLetters int `json:"dead_letters"`
}

// Memory is the drain's replicator process's resident memory.
type Memory struct {
	// PeakMB is VmHWM at the end; SteadyMB the median VmRSS after half the
	// events; EndMB the last reading; GrowthMB the last quarter's mean
	// minus the second quarter's.
	PeakMB   float64 `json:"peak_mb"`
	SteadyMB float64 `json:"steady_mb"`
	EndMB    float64 `json:"end_mb"`
	GrowthMB float64 `json:"growth_mb"`
}

// ProcessCPU is one process's CPU time over a phase.
type ProcessCPU struct {
	Process string  `json:"process"`
	Seconds float64 `json:"seconds"`
	// PerThousand is Seconds per 1,000 events of the phase.
	PerThousand float64 `json:"per_thousand"`
}

// Ceilings are the raw writers on the same machine and the same data
// (the first Knobs.StageEvents events of the tailer's stream).
type Ceilings struct {
	Events     int `json:"events"`
	Partitions int `json:"partitions"`
	// RawPublish: JetStream async publish of the captured payloads.
	RawPublish Ceiling `json:"raw_publish"`
	// RawCopy: COPY (and UPDATE from a COPYed staging table) of the same
	// rows into the same tables, one connection.
	RawCopy Ceiling `json:"raw_copy"`
	// RawPipeline: JetStream -> Postgres with Partitions appliers.
	RawPipeline Ceiling `json:"raw_pipeline"`
}

// Ceiling is one raw run.
type Ceiling struct {
	Events  int          `json:"events"`
	Seconds float64      `json:"seconds"`
	Rate    float64      `json:"rate"`
	CPU     []ProcessCPU `json:"cpu"`
}

// Ratios compare each stage with its ceiling: the stage's SustainedRate
// over the ceiling's rate, both over the stage backlog.
type Ratios struct {
	// EndToEnd: EndToEnd over RawPipeline (EndToEndExternal likewise).
	EndToEnd         float64 `json:"end_to_end"`
	EndToEndExternal float64 `json:"end_to_end_external_nats"`
	// Publish: Publish over RawPublish.
	Publish float64 `json:"publish"`
	// Apply: Apply over RawCopy; ApplyVsPipeline over RawPipeline.
	Apply           float64 `json:"apply"`
	ApplyVsPipeline float64 `json:"apply_vs_pipeline"`
}

// Lag is the steady-rate phase: lag = Postgres row-write time
// (clock_timestamp() in a trigger) minus the document's write stamp.
type Lag struct {
	OfferedRate  int     `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Seconds      float64 `json:"seconds"`
	Events       int     `json:"events"`
	// Measured is the number of row writes with a lag (every insert and
	// update of the four tables; deletes carry no stamp).
	Measured int     `json:"measured"`
	P50Ms    float64 `json:"p50_ms"`
	P95Ms    float64 `json:"p95_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// GeneratorMaxLateMs is the most an event's write finished after its
	// scheduled time: the load generator's own delay (a large value means
	// the machine could not write the offered load steadily, and the lag
	// includes the stall).
	GeneratorMaxLateMs float64      `json:"generator_max_late_ms"`
	RSS                Memory       `json:"rss"`
	CPU                []ProcessCPU `json:"cpu"`
	DeadLetters        int          `json:"dead_letters"`
}

// Target is one of issue 13's targets, evaluated on this run.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Op is ">=" or "<".
	Op    string  `json:"op"`
	Limit float64 `json:"limit"`
	Unit  string  `json:"unit"`
	Met   bool    `json:"met"`
}

// Series is one line of the plot: Kind "throughput" (events/s applied),
// "publish" (events/s published by cdc tail), "rss" (MB) or "lag" (ms),
// against seconds since its phase started.
type Series struct {
	Name   string  `json:"name"`
	Kind   string  `json:"kind"`
	Points []Point `json:"points"`
}

// Point is one value of a series.
type Point struct {
	T float64 `json:"t"`
	V float64 `json:"v"`
}

// ComputeRatios fills Ratios from the stages and ceilings.
func (r *Report) ComputeRatios() {
	div := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	c := r.Ceilings
	r.Ratios = Ratios{
		EndToEnd:         div(r.EndToEnd.SustainedRate, c.RawPipeline.Rate),
		EndToEndExternal: div(r.EndToEndExternal.SustainedRate, c.RawPipeline.Rate),
		Publish:          div(r.Publish.SustainedRate, c.RawPublish.Rate),
		Apply:            div(r.Apply.SustainedRate, c.RawCopy.Rate),
		ApplyVsPipeline:  div(r.Apply.SustainedRate, c.RawPipeline.Rate),
	}
}

// ComputeTargets evaluates issue 13's targets.
func (r *Report) ComputeTargets() {
	at := func(name string, v float64, op string, limit float64, unit string) Target {
		met := v >= limit
		if op == "<" {
			met = v < limit
		}
		return Target{Name: name, Value: v, Op: op, Limit: limit, Unit: unit, Met: met}
	}
	// Memory falling after the start-up peak is not growth.
	growth := 0.0
	if s := r.Backlog.RSS.SteadyMB; s > 0 {
		growth = max(r.Backlog.RSS.GrowthMB, 0) / s
	}
	r.Targets = []Target{
		at("end to end / raw JetStream->Postgres ceiling", r.Ratios.EndToEnd, ">=", 0.70, "ratio"),
		at("end to end, absolute", r.EndToEnd.SustainedRate, ">=", 20000, "events/s"),
		at("sink apply / raw COPY", r.Ratios.Apply, ">=", 0.60, "ratio"),
		at("tailer publish / raw publish", r.Ratios.Publish, ">=", 0.60, "ratio"),
		at("lag p99 at the offered rate", r.Lag.P99Ms, "<", 250, "ms"),
		at("backlog peak RSS (cdc run, embedded NATS)", r.Backlog.RSS.PeakMB, "<", 250, "MB"),
		at("backlog RSS growth / steady RSS", growth, "<", 0.10, "ratio"),
	}
}

// WriteJSON writes the report, indented, to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Check lists every number of the report that is missing or
// implausible: rates and times positive, ratios in (0, 5), percentiles
// ordered, memory and CPU positive, the workload's kinds of change all
// present, no dead letters. It checks a run's sanity, never its speed.
// It is long because it is a checklist, a line or two per field; the parts
// with more to check have their own check methods.
func (r *Report) Check() []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	pos := func(name string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			bad("%s = %v, want > 0", name, v)
		}
	}
	if r.Schema != ReportSchema {
		bad("schema = %d, want %d", r.Schema, ReportSchema)
	}
	if r.StartedAt.IsZero() {
		bad("started_at is zero")
	}
	pos("wall_seconds", r.WallSeconds)
	pos("machine.cpus", float64(r.Machine.CPUs))
	for name, v := range map[string]string{"machine.go_version": r.Machine.GoVersion, "machine.os": r.Machine.OS,
		"machine.arch": r.Machine.Arch, "machine.postgres_version": r.Machine.PostgresVersion, "machine.postgres_fsync": r.Machine.PostgresFsync} {
		if v == "" {
			bad("%s is empty", name)
		}
	}
	k := r.Knobs
	for name, v := range map[string]float64{"knobs.backlog_events": float64(k.BacklogEvents), "knobs.stage_events": float64(k.StageEvents),
		"knobs.lag_rate": float64(k.LagRate), "knobs.lag_seconds": k.LagSeconds, "knobs.raw_appliers": float64(k.RawAppliers),
		"knobs.sample_interval_s": k.SampleIntervalS} {
		pos(name, v)
	}
	p = append(p, r.Workload.check()...)
	for _, d := range []struct {
		name string
		d    Drain
	}{{"end_to_end", r.EndToEnd}, {"end_to_end_external_nats", r.EndToEndExternal}, {"publish", r.Publish}, {"apply", r.Apply}, {"backlog", r.Backlog}} {
		p = append(p, d.d.check(d.name)...)
		if d.name != "backlog" && d.d.Events != r.Ceilings.Events {
			bad("%s.events = %d, want the ceilings' %d: the stages and ceilings drain the same events", d.name, d.d.Events, r.Ceilings.Events)
		}
	}
	if r.Backlog.Events != r.Workload.Events {
		bad("backlog.events = %d, want the workload's %d", r.Backlog.Events, r.Workload.Events)
	}
	c := r.Ceilings
	pos("ceilings.events", float64(c.Events))
	pos("ceilings.partitions", float64(c.Partitions))
	for name, x := range map[string]Ceiling{"raw_publish": c.RawPublish, "raw_copy": c.RawCopy, "raw_pipeline": c.RawPipeline} {
		if x.Events != c.Events {
			bad("ceilings.%s.events = %d, want ceilings.events %d", name, x.Events, c.Events)
		}
		pos("ceilings."+name+".seconds", x.Seconds)
		pos("ceilings."+name+".rate", x.Rate)
		p = append(p, checkCPU("ceilings."+name, x.CPU)...)
	}
	for name, v := range map[string]float64{"ratios.end_to_end": r.Ratios.EndToEnd, "ratios.end_to_end_external_nats": r.Ratios.EndToEndExternal,
		"ratios.publish": r.Ratios.Publish, "ratios.apply": r.Ratios.Apply, "ratios.apply_vs_pipeline": r.Ratios.ApplyVsPipeline} {
		if !(v > 0 && v < 5) {
			bad("%s = %v, want in (0, 5)", name, v)
		}
	}
	p = append(p, r.Lag.check()...)
	if len(r.Targets) != 7 {
		bad("%d targets, want 7", len(r.Targets))
	}
	for _, t := range r.Targets {
		if math.IsNaN(t.Value) || math.IsInf(t.Value, 0) || t.Name == "" || (t.Op != ">=" && t.Op != "<") {
			bad("target %+v is malformed", t)
		}
	}
	kinds := map[string]int{}
	for _, s := range r.Series {
		if len(s.Points) == 0 {
			bad("series %q has no points", s.Name)
		}
		kinds[s.Kind]++
	}
	for _, want := range []string{"throughput", "publish", "rss", "lag"} {
		if kinds[want] == 0 {
			bad("no %s series", want)
		}
	}
	return p
}

func (w WorkloadReport) check() []string {
	var p []string
	if w.Events <= 0 || w.Transactions <= 0 || w.TxnEvents < 2*w.Transactions {
		p = append(p, fmt.Sprintf("workload: %d events, %d transactions with %d events: want events, and transactions of at least 2 events", w.Events, w.Transactions, w.TxnEvents))
	}
	sum := 0
	for _, op := range []string{"users.insert", "users.update", "users.delete", "purchaseRequests.insert", "purchaseRequests.update",
		"purchaseRequests.delete", "payments.insert", "payments.update", "fundsLedger.insert"} {
		if w.ByOp[op] <= 0 {
			p = append(p, fmt.Sprintf("workload.by_op[%s] = %d, want > 0", op, w.ByOp[op]))
		}
	}
	for _, n := range w.ByOp {
		sum += n
	}
	if sum != w.Events {
		p = append(p, fmt.Sprintf("workload.by_op sums to %d, want events %d", sum, w.Events))
	}
	if w.Writer.Events != w.Events {
		p = append(p, fmt.Sprintf("workload.writer.events = %d, want %d", w.Writer.Events, w.Events))
	}
	for _, c := range Collections {
		if w.AvgDocBytes[c] < 200 || w.AvgPayloadBytes[c] < w.AvgDocBytes[c]/2 {
			p = append(p, fmt.Sprintf("workload: %s documents of %.0f bytes, payloads of %.0f bytes: implausible", c, w.AvgDocBytes[c], w.AvgPayloadBytes[c]))
		}
		if w.Live[c] <= 0 {
			p = append(p, fmt.Sprintf("workload.live[%s] = %d, want > 0", c, w.Live[c]))
		}
	}
	if w.Sellers <= 0 || w.MongoWriteSeconds <= 0 || w.StageWriteSeconds <= 0 || w.StageEvents <= 0 || w.StageEvents > w.Events {
		p = append(p, fmt.Sprintf("workload: sellers %d, mongo_write_seconds %v, stage_events %d in %vs: want > 0, the stage backlog within the backlog",
			w.Sellers, w.MongoWriteSeconds, w.StageEvents, w.StageWriteSeconds))
	}
	return p
}

func (d Drain) check(name string) []string {
	var p []string
	if d.Events <= 0 || !(d.Seconds > 0) || !(d.Rate > 0) || !(d.SustainedRate > 0) {
		p = append(p, fmt.Sprintf("%s: %d events in %vs at %v events/s (sustained %v): want all > 0", name, d.Events, d.Seconds, d.Rate, d.SustainedRate))
	}
	p = append(p, d.RSS.check(name)...)
	p = append(p, checkCPU(name, d.CPU)...)
	if d.DeadLetters != 0 {
		p = append(p, fmt.Sprintf("%s: %d dead letters, want 0", name, d.DeadLetters))
	}
	return p
}

func (m Memory) check(name string) []string {
	if !(m.PeakMB > 0) || !(m.SteadyMB > 0) || !(m.EndMB > 0) || m.SteadyMB > m.PeakMB*1.05 {
		return []string{fmt.Sprintf("%s.rss: peak %v MB, steady %v MB, end %v MB: want > 0 and steady within the peak", name, m.PeakMB, m.SteadyMB, m.EndMB)}
	}
	return nil
}

func checkCPU(name string, cpu []ProcessCPU) []string {
	var p []string
	total := 0.0
	for _, c := range cpu {
		if c.Process == "" || c.Seconds < 0 || c.PerThousand < 0 {
			p = append(p, fmt.Sprintf("%s.cpu: %+v is malformed", name, c))
		}
		total += c.Seconds
	}
	if len(cpu) == 0 || !(total > 0) {
		p = append(p, fmt.Sprintf("%s.cpu: %d processes, %v s in all: want some CPU", name, len(cpu), total))
	}
	return p
}

func (l Lag) check() []string {
	var p []string
	if l.OfferedRate <= 0 || !(l.AchievedRate > 0) || !(l.Seconds > 0) || l.Events <= 0 || l.Measured <= 0 {
		p = append(p, fmt.Sprintf("lag: offered %d, achieved %v events/s over %vs, %d events, %d measured: want all > 0", l.OfferedRate, l.AchievedRate, l.Seconds, l.Events, l.Measured))
	}
	if !(l.P50Ms >= 0 && l.P50Ms <= l.P95Ms && l.P95Ms <= l.P99Ms && l.P99Ms <= l.MaxMs) {
		p = append(p, fmt.Sprintf("lag percentiles not ordered: p50 %v, p95 %v, p99 %v, max %v ms", l.P50Ms, l.P95Ms, l.P99Ms, l.MaxMs))
	}
	p = append(p, l.RSS.check("lag")...)
	p = append(p, checkCPU("lag", l.CPU)...)
	if l.DeadLetters != 0 {
		p = append(p, fmt.Sprintf("lag: %d dead letters, want 0", l.DeadLetters))
	}
	return p
}

// ReadReport decodes a report, refusing fields it does not know (a JSON
// written by another schema).
func ReadReport(data []byte) (*Report, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return &r, nil
}

// MissingFields lists the paths of Report's JSON fields that data lacks
// (every element of an array of objects is checked).
func MissingFields(data []byte) ([]string, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var missing []string
	missingIn(reflect.TypeFor[Report](), v, "", &missing)
	return missing, nil
}

func missingIn(t reflect.Type, v any, path string, missing *[]string) {
	switch t.Kind() {
	case reflect.Pointer:
		missingIn(t.Elem(), v, path, missing)
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			*missing = append(*missing, path+" (not an array)")
			return
		}
		for i, x := range arr {
			missingIn(t.Elem(), x, fmt.Sprintf("%s[%d]", path, i), missing)
		}
	case reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			return
		}
		obj, ok := v.(map[string]any)
		if !ok {
			*missing = append(*missing, path+" (not an object)")
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous {
				missingIn(f.Type, v, path, missing)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			x, ok := obj[name]
			if !ok {
				*missing = append(*missing, p)
				continue
			}
			missingIn(f.Type, x, p, missing)
		}
	}
}
