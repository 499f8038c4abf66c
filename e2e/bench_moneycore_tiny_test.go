package e2e

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/benchkit"
)

// mcTinyKnobs run BenchmarkMoneyCore's every phase on a workload small
// enough for `make test`: a 5,000-event backlog, stages and ceilings over
// its first 2,000 events, a 3 s lag phase.
var mcTinyKnobs = mcKnobs{
	Knobs: benchkit.Knobs{Seed: 7, BacklogEvents: 5000, StageEvents: 2000, LagRate: 2000, LagSeconds: 3,
		RawAppliers: 4, SampleIntervalS: 0.05},
	Sellers:      50,
	PhaseTimeout: 2 * time.Minute,
}

// TestMoneyCoreBenchTiny runs the money-core benchmark's whole run (every
// phase, process and ceiling of `make bench-e2e`) on a tiny workload and
// checks its output: every field of moneycore.json present and plausible
// (benchkit Report.Check: rates > 0, ratios in (0, 5), percentiles
// ordered, RSS > 0, no dead letters, the replicated tables equal to the
// workload's documents), the table naming every stage, the plot a PNG.
// It checks the benchmark, never the speed.
func TestMoneyCoreBenchTiny(t *testing.T) {
	k := mcTinyKnobs
	k.Out = t.TempDir()
	r := runMoneyCore(t, k)
	if problems := r.Check(); len(problems) > 0 {
		t.Fatalf("the report has %d problems:\n  %s\n%s", len(problems), strings.Join(problems, "\n  "), r.Table())
	}

	data, err := os.ReadFile(filepath.Join(k.Out, "moneycore.json"))
	must(t, err)
	missing, err := benchkit.MissingFields(data)
	if err != nil {
		t.Fatalf("moneycore.json: %v", err)
	}
	if len(missing) > 0 {
		t.Fatalf("moneycore.json lacks %v", missing)
	}
	decoded, err := benchkit.ReadReport(data)
	if err != nil {
		t.Fatalf("moneycore.json: %v", err)
	}
	if problems := decoded.Check(); len(problems) > 0 {
		t.Fatalf("moneycore.json read back has problems: %v", problems)
	}

	table, err := os.ReadFile(filepath.Join(k.Out, "moneycore.txt"))
	must(t, err)
	for _, want := range []string{"end to end: cdc run, embedded NATS", "end to end: cdc run, external NATS", "publish: cdc tail",
		"apply: cdc sink", "raw COPY", "raw async publish", "raw JetStream->PG x4", "p99", "VmHWM", "CPU s per 1,000 events", "targets"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("moneycore.txt does not mention %q:\n%s", want, table)
		}
	}

	f, err := os.Open(filepath.Join(k.Out, "moneycore.png"))
	must(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("moneycore.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 800 {
		t.Fatalf("moneycore.png is %dx%d, too small to read", b.Dx(), b.Dy())
	}
}
