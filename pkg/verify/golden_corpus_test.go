package verify

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

// corpusDir is the transforms' example corpus: each testdata/<collection>/
// <name>.json document beside the .golden file pinning what the sink's
// transform makes of it (transforms/golden_test.go writes them).
const corpusDir = "../../transforms/testdata"

// goldenRow is one row of a .golden file: column name to rendered value.
type goldenRow map[string]string

// golden is a parsed .golden file; rejected when the transform refuses
// the document.
type golden struct {
	rejected bool
	top      goldenRow
	children map[string][]goldenRow // by child table
}

// parseGolden reads the format of transforms/golden_test.go's render:
// "col = value" lines, then per child "## table (...): n row(s)" and
// "[j] col=value | col=value" lines. cols gives each child table's
// columns in order, which is how values holding " | " are split right.
func parseGolden(t *testing.T, text string, childCols map[string][]string) golden {
	t.Helper()
	g := golden{top: goldenRow{}, children: map[string][]goldenRow{}}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "# ") {
		t.Fatalf("not a golden file: %q", text)
	}
	if lines[1] == "rejected" || strings.HasPrefix(lines[1], "ERROR") {
		g.rejected = true
		return g
	}
	table := ""
	for _, line := range lines[1:] {
		switch {
		case line == "":
		case strings.HasPrefix(line, "## "):
			table = strings.Fields(line[3:])[0]
			g.children[table] = []goldenRow{}
		case table == "":
			col, val, ok := strings.Cut(line, " = ")
			if !ok {
				t.Fatalf("golden line %q", line)
			}
			g.top[strings.TrimSpace(col)] = val
		default:
			_, rest, ok := strings.Cut(line, "] ")
			if !ok {
				t.Fatalf("golden child line %q", line)
			}
			g.children[table] = append(g.children[table], parseChildRow(t, rest, childCols[table]))
		}
	}
	return g
}

func parseChildRow(t *testing.T, s string, cols []string) goldenRow {
	t.Helper()
	row := goldenRow{}
	for i, c := range cols {
		if i > 0 {
			var ok bool
			if s, ok = strings.CutPrefix(s, " | "); !ok {
				t.Fatalf("child row: expected ' | ' before %s in %q", c, s)
			}
		}
		var ok bool
		if s, ok = strings.CutPrefix(s, c+"="); !ok {
			t.Fatalf("child row: expected %s= in %q", c, s)
		}
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				t.Fatalf("child row: %s: %v", c, err)
			}
			val = q
		} else if j := strings.Index(s, " | "); j >= 0 {
			val = s[:j]
		} else {
			val = s
		}
		row[c], s = val, s[len(val):]
	}
	return row
}

// goldenExpect is what a golden value says the sink stored, in verify's
// canonical form: numeric text, ObjectId hex, a reference's legacy id, a
// time to the microsecond in UTC; null for NULL.
func goldenExpect(t *testing.T, c colPlan, val string) cval {
	t.Helper()
	if val == "NULL" {
		return null
	}
	switch {
	case c.kind == kRef:
		legacy, ok := strings.CutPrefix(val, "ref "+c.spec.Ref.Collection+"/")
		if !ok {
			t.Fatalf("%s: reference %q", c.name, val)
		}
		return cval{s: strings.Fields(legacy)[0]}
	case c.kind == kTime:
		at, err := time.Parse(time.RFC3339Nano, val)
		if err != nil {
			t.Fatalf("%s: time %q: %v", c.name, val, err)
		}
		return cval{s: timeText(at)}
	}
	s, err := strconv.Unquote(val)
	if err != nil {
		t.Fatalf("%s: value %q: %v", c.name, val, err)
	}
	return cval{s: s}
}

// ownExpect is verify's own value in the same form.
func ownExpect(c colPlan, o ownVal) cval {
	if c.kind == kRef && !o.v.null {
		return cval{s: o.ref}
	}
	return o.v
}

// TestOwnDecodingAgreesWithGoldenCorpus: on every example document the
// sink's transform accepts, verify's own decoding of every numeric,
// objectid, reference and timestamptz column (child tables included) is
// exactly what the .golden file says the sink stores. The two are written
// independently (pkg/transform with the driver and shopspring/decimal;
// decode.go from the bytes), so agreeing on the corpus is evidence for
// both.
func TestOwnDecodingAgreesWithGoldenCorpus(t *testing.T) {
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	docs := 0
	for _, m := range set.Mappings() {
		plan, err := newMappingPlan(m)
		if err != nil {
			t.Fatal(err)
		}
		files, err := filepath.Glob(filepath.Join(corpusDir, m.Collection, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		childCols := map[string][]string{}
		for _, ch := range plan.children {
			for _, c := range ch.cols {
				childCols[ch.table] = append(childCols[ch.table], c.name)
			}
		}
		for _, f := range files {
			name := strings.TrimSuffix(f, ".json")
			t.Run(m.Collection+"/"+filepath.Base(name), func(t *testing.T) {
				text, err := os.ReadFile(name + ".golden")
				if err != nil {
					t.Fatal(err)
				}
				g := parseGolden(t, string(text), childCols)
				if g.rejected {
					return // nothing stored
				}
				raw := readCorpusDoc(t, f)
				docs++
				top := srcScope{root: raw}
				for i := range plan.top.cols {
					c := plan.top.cols[i]
					if !c.independent() {
						continue
					}
					val, ok := g.top[c.name]
					if !ok {
						t.Fatalf("the golden has no column %s", c.name)
					}
					o := c.own(top)
					if !o.set {
						continue // a default from the mapping
					}
					want, got := goldenExpect(t, c, val), ownExpect(c, o)
					if got != want {
						t.Errorf("%s: verify decodes %s, the sink stored %s", c.name, got, want)
					}
					counts[c.kind.String()]++
				}
				for ci := range plan.children {
					ch := &plan.children[ci]
					rows := g.children[ch.table]
					own, why := ch.ownRows(raw, len(rows))
					if why != "" {
						t.Fatalf("%s: %s", ch.table, why)
					}
					for j, gr := range rows {
						for i := range ch.cols {
							c := ch.cols[i]
							if !c.independent() || !own[j][i].set {
								continue
							}
							want, got := goldenExpect(t, c, gr[c.name]), ownExpect(c, own[j][i])
							if got != want {
								t.Errorf("%s[%d].%s: verify decodes %s, the sink stored %s", ch.table, j, c.name, got, want)
							}
							counts[c.kind.String()]++
						}
					}
				}
			})
		}
	}
	t.Logf("compared on %d accepted documents: %v", docs, counts)
	// The corpus must actually exercise every kind (a parser that read
	// nothing would pass).
	for _, k := range []kind{kNumeric, kTime, kRef} {
		if counts[k.String()] < 5 {
			t.Errorf("only %d %s values compared", counts[k.String()], k)
		}
	}
}

func readCorpusDoc(t *testing.T, path string) bson.Raw {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d bson.D
	if err := bson.UnmarshalExtJSON(data, true, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
