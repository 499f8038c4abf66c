// Package archtest holds tests of the module's shape rather than its
// behaviour: which packages may import which.
package archtest

import (
	"bufio"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The package groups the rules speak of, as paths inside the module.
var (
	// tools are the operator commands' libraries: they read and repair
	// what the daemon does and may use the domain packages, never the
	// daemon's wiring.
	tools = []string{"pkg/status", "pkg/snapshot", "pkg/replay", "pkg/verify", "pkg/dlq", "pkg/metrics"}
	// wiring builds the daemon and the command line from configuration.
	wiring = []string{"pkg/app", "pkg/cli"}
	// harnesses are test servers and benchmark kits: tests import them,
	// production code never.
	harnesses = []string{"pkg/mongotest", "pkg/pgtest", "pkg/bus/bustest", "pkg/benchkit"}
	// harnessUsers are the packages, besides the harnesses themselves,
	// whose non-test files may import a harness: the end-to-end suite.
	// No command under cmd/ is a test tool today (cmd/cdc is the
	// replicator); one that is belongs here.
	harnessUsers = []string{"e2e"}
	// domain packages are what every component shares: the event, the
	// mappings, the state tables, the bus, the configuration, the oplog,
	// the checkpoint, the error vocabulary and the backoff.
	domain = []string{"pkg/event", "pkg/transform", "pkg/state", "pkg/bus", "pkg/config", "pkg/oplog", "pkg/mongoid",
		"pkg/checkpoint", "pkg/fault", "pkg/backoff"}
)

// rule forbids every package of from importing any package of
// forbidden, directly or through other packages of the module.
type rule struct {
	name      string
	from      []string // importers; nil: every package but except
	except    []string // importers the rule does not apply to
	forbidden []string
}

var rules = []rule{
	{name: "tools never import the wiring (app, cli)", from: tools, forbidden: wiring},
	{name: "snapshot imports neither replay nor the tailer", from: []string{"pkg/snapshot"}, forbidden: []string{"pkg/replay", "pkg/tailer"}},
	{name: "metrics imports neither the sink nor the tailer (the adapters are in pkg/app)", from: []string{"pkg/metrics"}, forbidden: []string{"pkg/sink", "pkg/tailer"}},
	{name: "production code never imports a test harness", except: append(append([]string(nil), harnesses...), harnessUsers...), forbidden: harnesses},
	{name: "domain packages never import a tool or the wiring", from: domain, forbidden: append(append([]string(nil), tools...), wiring...)},
}

// TestImportRules enforces rules on the module's package graph: every
// package under the module root (go/build with the default build
// context, so GOOS/GOARCH and no build tags), each with the imports of
// its non-test files only (a test may import what its package may not,
// e.g. a harness). An import through other packages of the module counts
// too, and the message shows the chain.
func TestImportRules(t *testing.T) {
	root, modPath := moduleRoot(t)
	graph := loadGraph(t, root, modPath)
	if len(graph) < 10 {
		t.Fatalf("found %d packages under %s; the walk is broken", len(graph), root)
	}
	for _, r := range rules {
		for _, p := range append(append(append([]string(nil), r.from...), r.except...), r.forbidden...) {
			if _, ok := graph[p]; !ok {
				t.Errorf("rule %q names %s, which is not a package of the module: update the rule", r.name, p)
			}
		}
	}
	var violations []string
	for _, r := range rules {
		forbidden := set(r.forbidden)
		except := set(r.except)
		for _, from := range importers(r, graph) {
			if except[from] {
				continue
			}
			for _, chain := range forbiddenChains(graph, from, forbidden) {
				to := chain[len(chain)-1]
				msg := fmt.Sprintf("%s imports %s", from, to)
				if len(chain) > 2 {
					msg += " (via " + strings.Join(chain, " -> ") + ")"
				}
				violations = append(violations, msg+": breaks rule \""+r.name+"\"")
			}
		}
	}
	sort.Strings(violations)
	for _, v := range violations {
		t.Error(v)
	}
}

// importers are the packages r applies to.
func importers(r rule, graph map[string][]string) []string {
	if r.from != nil {
		return r.from
	}
	all := make([]string, 0, len(graph))
	for p := range graph {
		all = append(all, p)
	}
	sort.Strings(all)
	return all
}

// forbiddenChains walks from's imports inside the module breadth-first
// and returns, for each forbidden package it reaches, the shortest chain
// from -> ... -> forbidden. The walk does not go through a forbidden
// package (its own imports are its rule's business).
func forbiddenChains(graph map[string][]string, from string, forbidden map[string]bool) [][]string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	var found []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, q := range graph[p] {
			if _, seen := prev[q]; seen {
				continue
			}
			prev[q] = p
			if forbidden[q] {
				found = append(found, q)
				continue
			}
			queue = append(queue, q)
		}
	}
	sort.Strings(found)
	chains := make([][]string, 0, len(found))
	for _, f := range found {
		var chain []string
		for p := f; p != ""; p = prev[p] {
			chain = append([]string{p}, chain...)
		}
		chains = append(chains, chain)
	}
	return chains
}

// loadGraph is every package under root: its path inside the module
// ("pkg/sink"; "." for the root) and the module packages its non-test
// files import. Hidden and underscore directories, testdata and nested
// modules are not part of the module's packages and are skipped.
func loadGraph(t *testing.T, root, modPath string) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	err := filepath.WalkDir(root, func(dir string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if dir != root {
			name := d.Name()
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		pkg, err := build.Default.ImportDir(dir, 0)
		var noGo *build.NoGoError
		switch {
		case errors.As(err, &noGo):
			return nil
		case err != nil:
			return fmt.Errorf("%s: %w", dir, err)
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return err
		}
		var deps []string
		for _, imp := range pkg.Imports { // non-test files only
			if imp == modPath {
				deps = append(deps, ".")
			} else if p, ok := strings.CutPrefix(imp, modPath+"/"); ok {
				deps = append(deps, p)
			}
		}
		graph[filepath.ToSlash(rel)] = deps
		return nil
	})
	if err != nil {
		t.Fatalf("listing the module's packages: %v", err)
	}
	return graph
}

// moduleRoot finds the go.mod above the test's directory and returns its
// directory and module path.
func moduleRoot(t *testing.T) (dir, modPath string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := os.Open(filepath.Join(dir, "go.mod"))
		if err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if p, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(p), `"`)
				}
			}
			t.Fatalf("%s/go.mod has no module line (%v)", dir, sc.Err())
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func set(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

// TestForbiddenChains: the walk finds forbidden packages reached
// directly and through others, by their shortest chain, and does not
// walk through a forbidden package.
func TestForbiddenChains(t *testing.T) {
	graph := map[string][]string{
		"a": {"b", "c"},
		"b": {"d"},
		"c": {"d", "x"},
		"d": {"y"},
		"x": {"z"},
		"y": nil,
		"z": nil,
	}
	for _, tc := range []struct {
		from      string
		forbidden []string
		want      string
	}{
		{"a", []string{"x"}, "a->c->x"},
		{"a", []string{"y"}, "a->b->d->y"},
		{"a", []string{"x", "z"}, "a->c->x"}, // z only behind x
		{"b", []string{"x"}, ""},
		{"a", []string{"d", "y"}, "a->b->d"},
	} {
		var got []string
		for _, c := range forbiddenChains(graph, tc.from, set(tc.forbidden)) {
			got = append(got, strings.Join(c, "->"))
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("forbiddenChains(%s, %v) = %q, want %q", tc.from, tc.forbidden, g, tc.want)
		}
	}
}
