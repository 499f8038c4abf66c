package benchkit

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
)

// Table renders the report for a person: the stages against their
// ceilings, the backlog drain, lag, memory, CPU per 1,000 events, and
// the targets.
func (r *Report) Table() string {
	var b strings.Builder
	m, k, w := r.Machine, r.Knobs, r.Workload
	fmt.Fprintf(&b, "money-core benchmark  %s  %s  %d CPUs  load %.2f  Postgres %s fsync %s  seed %d  (%.0f s)\n",
		r.StartedAt.Format("2006-01-02 15:04:05Z"), m.GoVersion, m.CPUs, m.Load1AtStart, m.PostgresVersion, m.PostgresFsync, k.Seed, r.WallSeconds)
	var mix []string
	for _, c := range Collections {
		n := 0
		for _, op := range []string{"insert", "update", "delete"} {
			n += w.ByOp[c+"."+op]
		}
		mix = append(mix, fmt.Sprintf("%s %.0f%% (%.0f B docs, %.0f B events)", c, pct(n, w.Events), w.AvgDocBytes[c], w.AvgPayloadBytes[c]))
	}
	del := w.ByOp[CollUsers+".delete"] + w.ByOp[CollPurchaseRequests+".delete"]
	upd := w.ByOp[CollUsers+".update"] + w.ByOp[CollPurchaseRequests+".update"] + w.ByOp[CollPayments+".update"]
	fmt.Fprintf(&b, "workload: %s events, %s in %s transactions, %.0f%% updates, %.1f%% deletes; written to MongoDB in %.1f s\n  %s\n\n",
		humanize.Comma(int64(w.Events)), humanize.Comma(int64(w.TxnEvents)), humanize.Comma(int64(w.Transactions)),
		pct(upd, w.Events), pct(del, w.Events), w.MongoWriteSeconds, strings.Join(mix, ", "))

	c := r.Ceilings
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tevents\tevents/s\tceiling\tevents/s\tratio\ttarget\t")
	row := func(name string, d Drain, ceiling string, cr float64, ratio float64, target string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t\n", name, humanize.Comma(int64(d.Events)),
			humanize.Comma(int64(d.SustainedRate)), ceiling, humanize.Comma(int64(cr)), ratio, target)
	}
	pipe := fmt.Sprintf("raw JetStream->PG x%d", c.Partitions)
	row("end to end: cdc run, embedded NATS", r.EndToEnd, pipe, c.RawPipeline.Rate, r.Ratios.EndToEnd, ">= 0.70")
	row("end to end: cdc run, external NATS", r.EndToEndExternal, pipe, c.RawPipeline.Rate, r.Ratios.EndToEndExternal, "")
	row("publish: cdc tail", r.Publish, "raw async publish", c.RawPublish.Rate, r.Ratios.Publish, ">= 0.60")
	row("apply: cdc sink", r.Apply, "raw COPY, 1 conn", c.RawCopy.Rate, r.Ratios.Apply, ">= 0.60")
	row("apply: cdc sink", r.Apply, pipe, c.RawPipeline.Rate, r.Ratios.ApplyVsPipeline, "")
	_ = tw.Flush()
	fmt.Fprintf(&b, "  every row drains the same %s-event stage backlog; a stage's events/s is its rate between 10%% and 90%% of them\n\n",
		humanize.Comma(int64(c.Events)))

	e := r.Backlog
	fmt.Fprintf(&b, "backlog drain (cdc run, embedded NATS): %s events in %.1f s = %s events/s from process start (sustained %s)\n",
		humanize.Comma(int64(e.Events)), e.Seconds, humanize.Comma(int64(e.Rate)), humanize.Comma(int64(e.SustainedRate)))
	l := r.Lag
	fmt.Fprintf(&b, "lag at %s events/s offered (%s achieved, the generator at most %.0f ms late) for %.0f s, %s row writes:\n  p50 %.0f ms  p95 %.0f ms  p99 %.0f ms  max %.0f ms\n\n",
		humanize.Comma(int64(l.OfferedRate)), humanize.Comma(int64(l.AchievedRate)), l.GeneratorMaxLateMs, l.Seconds, humanize.Comma(int64(l.Measured)),
		l.P50Ms, l.P95Ms, l.P99Ms, l.MaxMs)

	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "RSS of the cdc process, MB\tpeak (VmHWM)\tsteady (median, 2nd half)\tgrowth\t")
	mem := func(name string, m Memory) {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%+.0f\t\n", name, m.PeakMB, m.SteadyMB, m.GrowthMB)
	}
	mem(fmt.Sprintf("cdc run, embedded NATS (%s-event backlog)", humanize.Comma(int64(r.Backlog.Events))), r.Backlog.RSS)
	mem("cdc run, embedded NATS (stage backlog)", r.EndToEnd.RSS)
	mem("cdc run, external NATS (stage backlog)", r.EndToEndExternal.RSS)
	mem("cdc tail, external NATS (stage backlog)", r.Publish.RSS)
	mem("cdc sink, external NATS (stage backlog)", r.Apply.RSS)
	mem("cdc run, embedded NATS (lag phase)", r.Lag.RSS)
	_ = tw.Flush()
	b.WriteString("\n")

	b.WriteString(cpuTable(r))
	b.WriteString("\ntargets (issue 13)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, t := range r.Targets {
		verdict := "met"
		if !t.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s %s\t%s\t\n", t.Name, num(t.Value), t.Op, num(t.Limit), t.Unit, verdict)
	}
	_ = tw.Flush()
	return b.String()
}

// cpuTable is CPU seconds per 1,000 events, one row per phase and one
// column per process.
func cpuTable(r *Report) string {
	type phase struct {
		name string
		cpu  []ProcessCPU
	}
	phases := []phase{
		{"publish: cdc tail", r.Publish.CPU}, {"apply: cdc sink", r.Apply.CPU},
		{"end to end: cdc run, embedded NATS", r.EndToEnd.CPU}, {"end to end: cdc run, external NATS", r.EndToEndExternal.CPU},
		{"backlog: cdc run, embedded NATS", r.Backlog.CPU}, {"lag phase: cdc run, embedded NATS", r.Lag.CPU},
		{"ceiling: raw async publish", r.Ceilings.RawPublish.CPU}, {"ceiling: raw JetStream->PG", r.Ceilings.RawPipeline.CPU},
		{"ceiling: raw COPY", r.Ceilings.RawCopy.CPU},
	}
	seen := map[string]bool{}
	var procs []string
	for _, p := range phases {
		for _, c := range p.cpu {
			if !seen[c.Process] {
				seen[c.Process] = true
				procs = append(procs, c.Process)
			}
		}
	}
	order := map[string]int{"cdc tail": 0, "cdc sink": 1, "cdc run": 2, "nats-server": 3, "postgres": 4}
	sort.SliceStable(procs, func(i, j int) bool {
		oi, ok := order[procs[i]]
		if !ok {
			oi = 9
		}
		oj, ok := order[procs[j]]
		if !ok {
			oj = 9
		}
		return oi < oj
	})
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "CPU s per 1,000 events\t%s\ttotal\t\n", strings.Join(procs, "\t"))
	for _, p := range phases {
		by := map[string]float64{}
		total := 0.0
		for _, c := range p.cpu {
			by[c.Process] = c.PerThousand
			total += c.PerThousand
		}
		cells := make([]string, len(procs))
		for i, n := range procs {
			if v, ok := by[n]; ok {
				cells[i] = fmt.Sprintf("%.3f", v)
			} else {
				cells[i] = "-"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t\n", p.name, strings.Join(cells, "\t"), total)
	}
	_ = tw.Flush()
	return b.String()
}

func pct(n, total int) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

// num prints a target's value: ratios with two decimals, the rest whole.
func num(v float64) string {
	if v != 0 && v < 10 && v > -10 {
		return fmt.Sprintf("%.2f", v)
	}
	return humanize.Comma(int64(v))
}
