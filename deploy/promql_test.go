package deploy_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A small PromQL tokenizer: enough to find every metric name an
// expression selects, so the alert rules and the dashboard can be checked
// against what the program exports without importing Prometheus itself
// (github.com/prometheus/prometheus is a very large module for one
// parser). It is strict where a lax reading would hide a typo: an
// identifier followed by "(" must be a known function or aggregation, a
// regular expression on __name__ cannot be checked and is refused, and
// brackets must balance.

// promFunctions are PromQL's functions (Prometheus 2.x and 3.x), plus
// start() and end() of the @ modifier.
var promFunctions = set(
	"abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
	"avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
	"count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg", "delta",
	"deriv", "double_exponential_smoothing", "exp", "floor", "histogram_avg", "histogram_count",
	"histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
	"holt_winters", "hour", "idelta", "increase", "info", "irate", "label_join", "label_replace",
	"last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time", "minute",
	"month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
	"round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc",
	"sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp",
	"vector", "year", "start", "end",
)

// promAggregations may be followed by "by"/"without" before their "(".
var promAggregations = set(
	"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio",
)

// promKeywords are binary operators and modifiers (case-insensitive), and
// the number literals Inf and NaN.
var promKeywords = set("and", "or", "unless", "atan2", "bool", "offset", "inf", "nan")

// promLabelLists are keywords followed by a parenthesized list of label
// names (not metric names).
var promLabelLists = set("by", "without", "on", "ignoring", "group_left", "group_right")

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func skipSpace(s string, i int) int {
	for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
		i++
	}
	return i
}

// skipString returns the index after the string literal starting at i
// and its value.
func skipString(s string, i int) (int, string, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			lit := s[i : j+1]
			if q == '\'' {
				lit = `"` + strings.ReplaceAll(strings.ReplaceAll(lit[1:len(lit)-1], `\'`, `'`), `"`, `\"`) + `"`
			}
			v, err := strconv.Unquote(lit)
			if err != nil {
				return 0, "", fmt.Errorf("bad string %s at %d: %v", s[i:j+1], i, err)
			}
			return j + 1, v, nil
		}
	}
	return 0, "", fmt.Errorf("unterminated string at %d", i)
}

// skipVariable skips a Grafana variable ($name, ${name}, ${name:format}).
func skipVariable(s string, i int) (int, error) {
	if i+1 < len(s) && s[i+1] == '{' {
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return 0, fmt.Errorf("unterminated ${ at %d", i)
		}
		return i + j + 1, nil
	}
	j := i + 1
	for j < len(s) && isIdent(s[j]) {
		j++
	}
	if j == i+1 {
		return 0, fmt.Errorf("stray $ at %d", i)
	}
	return j, nil
}

// matchers reads the label matchers starting at the "{" at i. It returns
// the index after "}" and the metric name a __name__="..." matcher (or
// a Prometheus 3 quoted name, {"name"}) selects.
func matchers(s string, i int) (end int, name string, err error) {
	i++
	expectLabel := true
	for {
		i = skipSpace(s, i)
		if i >= len(s) {
			return 0, "", fmt.Errorf("unterminated {")
		}
		switch c := s[i]; {
		case c == '}':
			return i + 1, name, nil
		case c == ',':
			expectLabel = true
			i++
		case expectLabel && (isIdentStart(c) || c == '"'):
			var label string
			if c == '"' {
				if i, label, err = skipString(s, i); err != nil {
					return 0, "", err
				}
			} else {
				j := i
				for j < len(s) && isIdent(s[j]) {
					j++
				}
				label, i = s[i:j], j
			}
			i = skipSpace(s, i)
			op := ""
			for _, o := range []string{"=~", "!~", "!=", "="} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				if c == '"' { // {"metric.name", ...}
					name = label
					expectLabel = false
					continue
				}
				return 0, "", fmt.Errorf("label %q without a matcher operator at %d", label, i)
			}
			i = skipSpace(s, i+len(op))
			if i >= len(s) || strings.IndexByte("\"'`", s[i]) < 0 {
				return 0, "", fmt.Errorf("matcher %s%s without a string value at %d", label, op, i)
			}
			var val string
			if i, val, err = skipString(s, i); err != nil {
				return 0, "", err
			}
			if label == "__name__" {
				if op != "=" {
					return 0, "", fmt.Errorf("__name__%s%q: a metric-name pattern cannot be checked against the exported names; name the metric", op, val)
				}
				name = val
			}
			expectLabel = false
		default:
			return 0, "", fmt.Errorf("unexpected %q in label matchers at %d", c, i)
		}
	}
}

// seriesSelectors returns the metric names expr selects, in order.
func seriesSelectors(expr string) ([]string, error) {
	var names []string
	depth := 0
	i := 0
	for i < len(expr) {
		c := expr[i]
		var err error
		switch {
		case strings.IndexByte(" \t\r\n", c) >= 0:
			i++
		case c == '#':
			if j := strings.IndexByte(expr[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(expr)
			}
		case c == '"' || c == '\'' || c == '`':
			i, _, err = skipString(expr, i)
		case c == '{':
			var name string
			i, name, err = matchers(expr, i)
			if err == nil && name == "" {
				err = fmt.Errorf("a selector without a metric name cannot be checked")
			}
			if name != "" {
				names = append(names, name)
			}
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [ at %d", i)
			}
			i += j + 1
		case c == ']' || c == '}':
			return nil, fmt.Errorf("unbalanced %q at %d", c, i)
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth--; depth < 0 {
				return nil, fmt.Errorf("unbalanced ) at %d", i)
			}
			i++
		case c == '$':
			i, err = skipVariable(expr, i)
		case isDigit(c) || (c == '.' && i+1 < len(expr) && isDigit(expr[i+1])):
			// Numbers and durations: 0.99, 1e-3, 0x1F, 5m, 1h30m.
			for i++; i < len(expr) && (isIdent(expr[i]) || expr[i] == '.' ||
				((expr[i] == '+' || expr[i] == '-') && (expr[i-1] == 'e' || expr[i-1] == 'E'))); i++ {
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word, lower := expr[i:j], strings.ToLower(expr[i:j])
			k := skipSpace(expr, j)
			next := byte(0)
			if k < len(expr) {
				next = expr[k]
			}
			i = j
			switch {
			case promLabelLists[lower]:
				if next == '(' {
					end := strings.IndexByte(expr[k:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unterminated label list after %s", word)
					}
					for _, l := range strings.Split(expr[k+1:k+end], ",") {
						if l = strings.TrimSpace(l); l != "" && !isLabelName(l) {
							return nil, fmt.Errorf("%q in the label list of %s is not a label name", l, word)
						}
					}
					i = k + end + 1
				}
			case promKeywords[lower]:
			case next == '(':
				if !promFunctions[word] && !promAggregations[word] {
					return nil, fmt.Errorf("unknown function %s()", word)
				}
			case promAggregations[word] && isWordAt(expr, k, "by", "without"):
			default:
				names = append(names, word)
				if next == '{' {
					var name string
					if i, name, err = matchers(expr, k); err == nil && name != "" && name != word {
						err = fmt.Errorf("%s{__name__=%q} selects two names", word, name)
					}
				}
			}
		case strings.IndexByte("+-*/%^=!<>,@:", c) >= 0:
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		}
		if err != nil {
			return nil, err
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%d unclosed (", depth)
	}
	return names, nil
}

func isLabelName(s string) bool {
	if s == "" || !isIdentStart(s[0]) || strings.Contains(s, ":") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isIdent(s[i]) {
			return false
		}
	}
	return true
}

// isWordAt reports whether one of words (case-insensitive) starts at i
// as a whole identifier.
func isWordAt(s string, i int, words ...string) bool {
	j := i
	for j < len(s) && isIdent(s[j]) {
		j++
	}
	return slices.Contains(words, strings.ToLower(s[i:j]))
}

func TestSeriesSelectors(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`up{job="cdc"} == 0`, []string{"up"}},
		{`absent(up{job="cdc"})`, []string{"up"}},
		{`max by (job, instance) (cdc_replication_lag_seconds) > 60`, []string{"cdc_replication_lag_seconds"}},
		{`sum(rate(cdc_events_total[5m])) by (collection)`, []string{"cdc_events_total"}},
		{`sum without (operation) (rate(cdc_events_total{outcome=~"dead_lettered|parked"}[15m]))`, []string{"cdc_events_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(cdc_sink_apply_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`,
			[]string{"cdc_sink_apply_seconds_bucket"}},
		{`sum(rate(a_sum[5m])) / sum(rate(a_count[5m]))`, []string{"a_sum", "a_count"}},
		{`time() - (cdc_tailer_checkpoint_saved_timestamp_seconds > 0)`, []string{"cdc_tailer_checkpoint_saved_timestamp_seconds"}},
		{"x > 0\n  and on (job, instance)\n  y == 0", []string{"x", "y"}},
		{`a * on (instance) group_left (version) b`, []string{"a", "b"}},
		{`a + ignoring(job) group_right b offset 1h`, []string{"a", "b"}},
		{`rate(a[5m] offset -1h30m) > bool 1e-3`, []string{"a"}},
		{`a @ start() - a @ 1700000000`, []string{"a", "a"}},
		{`max_over_time(a[1h:5m])`, []string{"a"}},
		{`label_replace(up, "dst", "cdc_fake_metric", "job", "(.*)")`, []string{"up"}},
		{`{__name__="cdc_events_total", outcome="applied"}`, []string{"cdc_events_total"}},
		{`{"cdc_events_total", outcome="applied"}`, []string{"cdc_events_total"}},
		{`a{l="}{[(", m='it\'s'} + Inf - NaN`, []string{"a"}},
		{`topk(5, a) # comment naming not_a_metric`, []string{"a"}},
		{`count_values("v", a)`, []string{"a"}},
		{`vector(1) and on() b`, []string{"b"}},
		{`a:rate5m`, []string{"a:rate5m"}},
	}
	for _, tc := range cases {
		got, err := seriesSelectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestSeriesSelectorsRefuses(t *testing.T) {
	cases := []struct{ expr, want string }{
		{`rat(cdc_events_total[5m])`, "unknown function rat()"},
		{`sum(rate(a[5m])`, "unclosed"},
		{`rate(a[5m]))`, "unbalanced )"},
		{`a{job="x"`, "unterminated {"},
		{`a{job="x}`, "unterminated string"},
		{`{__name__=~"cdc_.*"}`, "cannot be checked"},
		{`{job="cdc"}`, "without a metric name"},
		{`a{job}`, "without a matcher operator"},
		{`sum by (a-b) (x)`, "not a label name"},
		{`a{__name__="b"}`, "selects two names"},
	}
	for _, tc := range cases {
		_, err := seriesSelectors(tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.expr, err, tc.want)
		}
	}
}
