package migrate

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func itoa(n int) string { return fmt.Sprint(n) }

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// reserved are PostgreSQL's reserved key words (those that cannot be a
// column or table name unquoted).
var reserved = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`all analyse analyze and any array as asc asymmetric authorization binary both case cast check
		collate collation column concurrently constraint create cross current_catalog current_date current_role current_schema
		current_time current_timestamp current_user default deferrable desc distinct do else end except false fetch for
		foreign freeze from full grant group having ilike in initially inner intersect into is isnull join lateral leading
		left like limit localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing
		primary references returning right select session_user similar some symmetric system_user table tablesample then to
		trailing true union unique user using variadic verbose when where window with`) {
		reserved[w] = true
	}
}

// quoteIdent quotes an identifier when it needs it, so that the plan reads
// like the migrations.
func quoteIdent(s string) string {
	if plainIdent.MatchString(s) && !reserved[s] {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = quoteLiteral(s)
	}
	return out
}

// truncIdent cuts a generated name to PostgreSQL's 63 bytes.
func truncIdent(s string) string {
	if len(s) > 63 {
		return s[:63]
	}
	return s
}

// sortedDiffs orders differences by object, then kind, for a stable error.
func sortedDiffs(ds []Difference) []Difference {
	out := append([]Difference(nil), ds...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Object != out[j].Object {
			return out[i].Object < out[j].Object
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}
