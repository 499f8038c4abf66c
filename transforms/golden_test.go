package transforms_test

import (
	"flag"
	"fmt"
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

var update = flag.Bool("update", false, "rewrite the .golden files of testdata/ from the current mappings")

func builtin(t testing.TB) *transform.Set {
	t.Helper()
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// readDoc parses a canonical Extended JSON document.
func readDoc(t testing.TB, path string) bson.Raw {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d bson.D
	if err := bson.UnmarshalExtJSON(data, true, &d); err != nil {
		t.Fatalf("%s: not canonical Extended JSON: %v", path, err)
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestGolden: every example document of testdata/<collection>/*.json maps
// to exactly the rows (parent and child sets) or the rejection pinned in
// the .golden file beside it. go test ./transforms -run TestGolden -update
// rewrites them; review the diff.
func TestGolden(t *testing.T) {
	set := builtin(t)
	dirs, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		coll := d.Name()
		m, ok := set.Get(coll)
		if !ok {
			continue // not a collection: other corpora
		}
		covered[coll] = true
		files, err := filepath.Glob(filepath.Join("testdata", coll, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Errorf("testdata/%s has no example documents", coll)
		}
		for _, f := range files {
			name := strings.TrimSuffix(f, ".json")
			t.Run(coll+"/"+filepath.Base(name), func(t *testing.T) {
				got := render(m, readDoc(t, f))
				golden := name + ".golden"
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from the mapping's output (run with -update and review the diff):\n--- got\n%s\n--- want\n%s", golden, got, want)
				}
			})
		}
	}
	for _, c := range set.Collections() {
		if !covered[c] {
			t.Errorf("collection %s has no testdata/%s/ examples", c, c)
		}
	}
}

// render is the pinned text form of a mapping's output for one document.
func render(m *transform.Mapping, doc bson.Raw) string {
	var b strings.Builder
	row, err := m.Row(doc)
	fmt.Fprintf(&b, "# %s -> %s (id %s of _id %s)\n", m.Collection, m.Table, m.ID.Type, doc.Lookup("_id").String())
	if err != nil {
		rej, ok := transform.AsRejection(err)
		if !ok {
			fmt.Fprintf(&b, "ERROR (not a rejection): %v\n", err)
			return b.String()
		}
		fmt.Fprintf(&b, "rejected\n  field:  %s\n  column: %s\n  value:  %s\n  reason: %s\n", rej.Field, rej.Column, rej.Value, rej.Reason)
		return b.String()
	}
	refs := map[int]transform.Ref{}
	for _, r := range row.Refs {
		refs[r.Col] = r
	}
	width := 0
	for _, c := range m.Columns {
		width = max(width, len(c.Column))
	}
	for i, c := range m.Columns {
		fmt.Fprintf(&b, "%-*s = %s\n", width, c.Column, renderValue(row.Values[i], refs, i))
	}
	for _, set := range row.Children {
		fmt.Fprintf(&b, "\n## %s (%s = parent id): %d row(s)\n", set.Table, set.ParentColumn, len(set.Rows))
		for j, r := range set.Rows {
			crefs := map[int]transform.Ref{}
			for _, ref := range r.Refs {
				crefs[ref.Col] = ref
			}
			parts := make([]string, len(set.Columns))
			for k, col := range set.Columns {
				parts[k] = col + "=" + renderValue(r.Values[k], crefs, k)
			}
			fmt.Fprintf(&b, "[%d] %s\n", j, strings.Join(parts, " | "))
		}
	}
	return b.String()
}

func renderValue(v any, refs map[int]transform.Ref, i int) string {
	if r, ok := refs[i]; ok {
		s := fmt.Sprintf("ref %s/%s (field %s, missing: %s", r.Collection, r.LegacyID, r.Field, r.Missing)
		if r.Wait > 0 {
			s += fmt.Sprintf(" %s", r.Wait)
		}
		return s + ")"
	}
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return strconv.Quote(x)
	case []string:
		q := make([]string, len(x))
		for k, s := range x {
			q[k] = strconv.Quote(s)
		}
		return "{" + strings.Join(q, ",") + "}"
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case int64, bool, float64:
		return fmt.Sprint(x)
	}
	return fmt.Sprintf("%T(%v)", v, v)
}

// TestREADMEExamples: the example documents printed in README.md are the
// test files byte for byte, so the documentation cannot drift from what
// the tests pin.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	set := builtin(t)
	for _, coll := range set.Collections() {
		name := validExamples[coll]
		data, err := os.ReadFile(filepath.Join("testdata", coll, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		block := "Example (`testdata/" + coll + "/" + name + ".json`, canonical Extended JSON):\n\n```json\n" + string(data) + "```\n"
		if !strings.Contains(string(readme), block) {
			t.Errorf("README.md does not show testdata/%s/%s.json as the %s example (regenerate the section)", coll, name, coll)
		}
	}
}
