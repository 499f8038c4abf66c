// Package deploy_test checks the operations files in deploy/: the
// Prometheus alert rules and the Grafana dashboard parse, have the
// structure their tools need, and reference only metrics the program
// exports (pkg/metrics.Names, their histogram series, and the standard
// series: up, go_*, process_*).
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"unicode"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/amanat/cdc/pkg/metrics"
)

const (
	rulesPath     = "prometheus/cdc-alerts.yml"
	dashboardPath = "grafana/cdc-dashboard.json"
	runbookPath   = "../docs/runbook.md"
)

// catalog is what the program exports.
type catalog struct {
	names map[string]bool
	// suffixes allowed per metric: _bucket/_sum/_count for histograms,
	// _sum/_count for summaries.
	suffixes map[string][]string
}

// exported builds the catalog from metrics.Names and the registry of
// metrics.New (for the metric types and the Go and process collectors'
// series), plus the series Prometheus adds to every scrape.
func exported(t *testing.T) catalog {
	t.Helper()
	c := catalog{names: map[string]bool{}, suffixes: map[string][]string{}}
	for _, n := range metrics.Names {
		c.names[n] = true
	}
	for _, n := range []string{"up", "scrape_duration_seconds", "scrape_samples_scraped",
		"scrape_samples_post_metric_relabeling", "scrape_series_added"} {
		c.names[n] = true
	}
	mfs, err := metrics.New().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		std := strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
		if !std && !c.names[name] {
			continue // a vector with no series yet: Names is the contract
		}
		c.names[name] = true
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			c.suffixes[name] = []string{"_bucket", "_sum", "_count"}
		case dto.MetricType_SUMMARY:
			c.suffixes[name] = []string{"_sum", "_count"}
		}
	}
	// Histograms of Names must have been found (they have no labels, so
	// they are always gathered); otherwise their series would be refused.
	for _, h := range []string{"cdc_sink_apply_seconds", "cdc_sink_batch_events"} {
		if len(c.suffixes[h]) == 0 {
			t.Fatalf("%s is not gathered as a histogram", h)
		}
	}
	return c
}

// check returns an error for every name in expr that is not exported.
func (c catalog) check(expr string) []error {
	names, err := seriesSelectors(expr)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, n := range names {
		if !c.has(n) {
			errs = append(errs, fmt.Errorf("metric %s is not exported by the program (not in metrics.Names, not a histogram series of one, not up/go_*/process_*)", n))
		}
	}
	return errs
}

func (c catalog) has(name string) bool {
	if c.names[name] {
		return true
	}
	for base, sufs := range c.suffixes {
		for _, s := range sufs {
			if name == base+s {
				return true
			}
		}
	}
	return false
}

// runbookAnchors are the GitHub anchors of docs/runbook.md's headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(runbookPath)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		h := strings.TrimLeft(line, "#")
		if len(h) == len(line) || !strings.HasPrefix(h, " ") {
			continue
		}
		out[anchor(strings.TrimSpace(h))] = true
	}
	return out
}

// anchor is GitHub's heading anchor: lower case, punctuation other than
// '-' and '_' dropped, spaces to '-'.
func anchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// Prometheus alert rule files.

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// promDuration is Prometheus's duration syntax (units largest first).
var promDuration = regexp.MustCompile(`^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$`)

// Prometheus prepends these to every annotation template, and offers
// these functions (values are placeholders: only parsing is checked).
const promTemplateHeader = `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}`

var promTemplateFuncs = func() template.FuncMap {
	fm := template.FuncMap{}
	for _, f := range []string{"query", "first", "label", "value", "strvalue", "args", "reReplaceAll", "match", "title",
		"toUpper", "toLower", "graphLink", "tableLink", "sortByLabel", "humanize", "humanize1024", "humanizeDuration",
		"humanizePercentage", "humanizeTimestamp", "toTime", "toDuration", "pathPrefix", "externalURL", "parseDuration",
		"safeHtml", "stripPort", "stripDomain", "now", "tmpl"} {
		fm[f] = func(...any) string { return "" }
	}
	return fm
}()

// checkRules returns every problem of an alert rule file.
func checkRules(data []byte, cat catalog, anchors map[string]bool) []error {
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return []error{fmt.Errorf("parse: %w", err)}
	}
	var errs []error
	bad := func(where, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
	}
	if len(f.Groups) == 0 {
		bad("file", "no groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	for gi, g := range f.Groups {
		where := fmt.Sprintf("group %d (%s)", gi, g.Name)
		if g.Name == "" || groups[g.Name] {
			bad(where, "name missing or repeated")
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			bad(where, "no rules")
		}
		if g.Interval != "" && !promDuration.MatchString(g.Interval) {
			bad(where, "interval %q is not a Prometheus duration", g.Interval)
		}
		for ri, r := range g.Rules {
			where := fmt.Sprintf("%s rule %d (%s)", where, ri, r.Alert)
			if r.Record != "" {
				bad(where, "recording rules would add metric names the program does not export; keep this file to alerts")
			}
			if r.Alert == "" {
				bad(where, "alert name missing")
			} else if alerts[r.Alert] {
				bad(where, "alert name repeated")
			}
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				bad(where, "expr missing")
			}
			for _, err := range cat.check(r.Expr) {
				bad(where, "expr: %v", err)
			}
			if r.For == "" || !promDuration.MatchString(r.For) {
				bad(where, "for %q missing or not a Prometheus duration", r.For)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				bad(where, "labels.severity %q is not critical, warning or info", r.Labels["severity"])
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					bad(where, "annotations.%s missing", k)
				}
			}
			for k, v := range r.Annotations {
				if _, err := template.New(k).Funcs(promTemplateFuncs).Parse(promTemplateHeader + v); err != nil {
					bad(where, "annotations.%s is not a valid template: %v", k, err)
				}
			}
			if rb := r.Annotations["runbook_url"]; rb != "" {
				a, ok := strings.CutPrefix(rb, "docs/runbook.md#")
				if !ok || !anchors[a] {
					bad(where, "runbook_url %q is not a docs/runbook.md#<heading> that exists", rb)
				}
			}
		}
	}
	return errs
}

// Grafana dashboards.

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// checkDashboard returns every problem of a dashboard and the metric
// names its panels plot.
func checkDashboard(data []byte, cat catalog) (plotted map[string]bool, errs []error) {
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return nil, []error{fmt.Errorf("parse: %w", err)}
	}
	bad := func(where, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
	}
	if d.Title == "" || d.UID == "" {
		bad("dashboard", "title and uid are required")
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		bad("dashboard", "schemaVersion %d: expected about 39 (Grafana 10-11)", d.SchemaVersion)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			hasDS = v.Name == "datasource" && string(v.Query) == `"prometheus"`
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				bad("variable "+v.Name, "query: %v", err)
				continue
			}
			m := labelValues.FindStringSubmatch(q.Query)
			if m == nil {
				bad("variable "+v.Name, "query %q is not label_values(<selector>, <label>)", q.Query)
				continue
			}
			for _, err := range cat.check(m[1]) {
				bad("variable "+v.Name, "%v", err)
			}
		}
	}
	if !hasDS {
		bad("templating", "no datasource variable named datasource of type prometheus")
	}
	plotted = map[string]bool{}
	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d (%s)", p.ID, p.Title)
			if p.ID <= 0 || ids[p.ID] {
				bad(where, "id missing or repeated")
			}
			ids[p.ID] = true
			if p.Title == "" {
				bad(where, "title missing")
			}
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				bad(where, "gridPos %+v outside the 24-column grid", g)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if !slices.Contains([]string{"timeseries", "stat", "gauge", "bargauge", "table", "heatmap"}, p.Type) {
				bad(where, "type %q", p.Type)
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				bad(where, "datasource must be the prometheus ${datasource} variable")
			}
			if len(p.Targets) == 0 {
				bad(where, "no targets")
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] {
					bad(where, "target refId %q missing or repeated", tg.RefID)
				}
				refs[tg.RefID] = true
				if strings.TrimSpace(tg.Expr) == "" {
					bad(where, "target %s has no expr", tg.RefID)
					continue
				}
				for _, err := range cat.check(tg.Expr) {
					bad(where, "target %s: %v", tg.RefID, err)
				}
				names, _ := seriesSelectors(tg.Expr)
				for _, n := range names {
					plotted[n] = true
				}
			}
		}
	}
	walk(d.Panels)
	if len(ids) == 0 {
		bad("dashboard", "no panels")
	}
	return plotted, errs
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func report(t *testing.T, file string, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Errorf("%s: %v", file, err)
	}
}

// TestAlertRules: the shipped rules parse, are complete, and reference
// only exported metrics.
func TestAlertRules(t *testing.T) {
	data := read(t, rulesPath)
	report(t, rulesPath, checkRules(data, exported(t), runbookAnchors(t)))

	// The alerts the operators asked for exist.
	var f ruleFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Alert+": "+r.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"cdc_replication_lag_seconds", "cdc_replication_lag_events", "cdc_oplog_headroom_seconds",
		`outcome=~"dead_lettered|parked"`, "changes(cdc_sink_last_applied_cluster_time_seconds", "cdc_tailer_checkpoint_saved_timestamp_seconds",
		"cdc_retries_total", `up{job="cdc"} == 0`, "changes(process_start_time_seconds", "cdc_sink_deferred_oldest_timestamp_seconds"} {
		if !strings.Contains(all, want) {
			t.Errorf("no alert uses %s", want)
		}
	}
}

// TestDashboard: the shipped dashboard parses, every panel has targets
// over exported metrics, and every metric the program exports is
// plotted.
func TestDashboard(t *testing.T) {
	plotted, errs := checkDashboard(read(t, dashboardPath), exported(t))
	report(t, dashboardPath, errs)
	for _, n := range metrics.Names {
		if !plotted[n] && !plotted[n+"_bucket"] && !plotted[n+"_sum"] {
			t.Errorf("%s: metric %s is exported but not plotted", dashboardPath, n)
		}
	}
}

// TestCheckerCatchesMistakes: the checks fail on the mistakes they exist
// for. Each case edits the shipped file and expects an error naming the
// problem.
func TestCheckerCatchesMistakes(t *testing.T) {
	cat, anchors := exported(t), runbookAnchors(t)
	rules, dash := string(read(t, rulesPath)), string(read(t, dashboardPath))
	edit := func(t *testing.T, s, old, new string) string {
		t.Helper()
		if !strings.Contains(s, old) {
			t.Fatalf("the shipped file no longer contains %q: update this test", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	ruleCases := []struct{ name, old, new, want string }{
		{"metric that does not exist", "max by (job, instance) (cdc_replication_lag_seconds) > 60",
			"max by (job, instance) (cdc_replication_lag_secs) > 60", "CDCReplicationLagHigh): expr: metric cdc_replication_lag_secs is not exported"},
		{"histogram suffix on a counter", "rate(cdc_retries_total[5m])", "rate(cdc_retries_total_bucket[5m])",
			"metric cdc_retries_total_bucket is not exported"},
		{"unknown function", "rate(cdc_retries_total[5m])", "rat(cdc_retries_total[5m])", "unknown function rat()"},
		{"missing for", "        for: 5m\n        labels:\n          severity: warning\n        annotations:\n          summary: \"cdc on {{ $labels.instance }}: Postgres is",
			"        labels:\n          severity: warning\n        annotations:\n          summary: \"cdc on {{ $labels.instance }}: Postgres is", `for "" missing`},
		{"bad severity", "severity: critical", "severity: page", "labels.severity \"page\""},
		{"missing summary", "summary: \"No cdc replicator is being scraped\"", "note: x", "annotations.summary missing"},
		{"misspelled key", "annotations:\n          summary: \"No cdc", "annotation:\n          summary: \"No cdc", "field annotation not found"},
		{"runbook that is not in the runbook", `runbook_url: "docs/runbook.md#cdctargetdown"`, `runbook_url: "docs/runbook.md#no-such-section"`, "is not a docs/runbook.md#<heading>"},
		{"runbook in the README", `runbook_url: "docs/runbook.md#cdctargetdown"`, `runbook_url: "README.md#cdctargetdown"`, "is not a docs/runbook.md#<heading>"},
		{"broken template", "{{ $value | humanizeDuration }} behind", "{{ $value | humanizeDuration } behind", "not a valid template"},
		{"unbalanced expression", "> 0.05", ") > 0.05", "unbalanced )"},
		{"not YAML", "groups:", "groups: [", "parse"},
	}
	for _, tc := range ruleCases {
		t.Run("rules/"+tc.name, func(t *testing.T) {
			errs := checkRules([]byte(edit(t, rules, tc.old, tc.new)), cat, anchors)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("want an error containing %q, got %v", tc.want, errors.Join(errs...))
			}
		})
	}
	dashCases := []struct{ name, old, new, want string }{
		{"metric that does not exist", "cdc_sink_waiting_events{", "cdc_sink_waiting{", "metric cdc_sink_waiting is not exported"},
		{"panel without targets", `"targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "up{`, `"targets": [], "x": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "up{`, "no targets"},
		{"target without expr", `"expr": "cdc_sink_waiting_events{instance=~\"$instance\"}"`, `"expr": ""`, "has no expr"},
		{"variable over an unknown metric", `"query": "label_values(up{job=\"cdc\"}, instance)"`,
			`"query": "label_values(cdc_nope{job=\"cdc\"}, instance)"`, "variable instance: metric cdc_nope is not exported"},
		{"not JSON", `"panels": [`, `"panels": [[`, "parse"},
	}
	for _, tc := range dashCases {
		t.Run("dashboard/"+tc.name, func(t *testing.T) {
			_, errs := checkDashboard([]byte(edit(t, dash, tc.old, tc.new)), cat)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("want an error containing %q, got %v", tc.want, errors.Join(errs...))
			}
		})
	}
}
