package verify

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// docState is one document being settled: what Mongo holds (raw nil: no
// live document), when it was read, and what the transform makes of it.
type docState struct {
	key    string
	id     []any // _id values to re-read it by
	raw    bson.Raw
	lo, hi event.ClusterTime
	row    *transform.Row // nil when raw is nil or rejected
	rejErr error          // the transform's rejection
	// own is verify's own reading of the independent columns (nil with
	// row).
	own *ownRow
	// data: compare values (else only presence, in sample mode).
	data bool
	// candidate is the fingerprint of a mismatch already seen once after
	// the sink passed the read; seeing it again confirms it.
	candidate string
	// changed: a re-read found another Mongo document than the one read
	// before (or none).
	changed bool
}

// set records a (re-)read of the document.
func (d *docState) set(plan *mappingPlan, raw bson.Raw, lo, hi event.ClusterTime) {
	if raw != nil {
		if id, err := raw.LookupErr("_id"); err == nil {
			d.id = []any{id}
		}
	} else if d.id == nil {
		d.id = keyIDs(d.key)
	}
	if !bytesEqual(d.raw, raw) {
		d.candidate = ""
	}
	d.raw, d.lo, d.hi = raw, lo, hi
	d.row, d.rejErr, d.own = nil, nil, nil
	if raw != nil && d.data {
		d.row, d.rejErr = plan.row(plan.m, raw)
		if d.row != nil {
			d.own = plan.ownRow(raw, d.row)
		}
	}
}

func bytesEqual(a, b bson.Raw) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	return string(a) == string(b)
}

// problem is one mismatch of a document, for one check.
type problem struct {
	check string // checkIDMapToPG, checkIDMapToMongo, checkDiff
	ex    Example
}

// Check names.
const (
	checkCount        = "count"
	checkIDMapToPG    = "idmap_mongo_to_pg"
	checkIDMapToMongo = "idmap_pg_to_mongo"
	checkDiff         = "document_diff"
	checkSums         = "money_sums"
	checkFK           = "fk_integrity"
	checkCatalog      = "transform_catalog"
)

// roundInfo is what a comparison round knows besides the rows: references
// resolved through id_map, which referenced parents have rows, and the
// dangling-reference records.
type roundInfo struct {
	uuids    map[string]idmapEntry
	present  map[string]bool
	dangling map[string]string
}

// compare says how the document differs from its row ("" problems: it
// does not).
func (r *collRun) compare(d *docState, row *pgRow, info *roundInfo) []problem {
	plan := r.plan
	var pgID string
	if row != nil {
		pgID = row.newID
	}
	exists := row != nil && row.exists && !row.deleted
	if d.raw == nil {
		if exists {
			return []problem{{checkIDMapToMongo, Example{ID: d.key, PGID: pgID, Table: plan.top.table,
				Detail: "row has no live Mongo document (deleted in Mongo, or never there)"}}}
		}
		return nil
	}
	out := r.presenceProblems(d, row, pgID)
	if !d.data {
		return out
	}
	if d.rejErr != nil {
		return append(out, problem{checkDiff, Example{ID: d.key, PGID: pgID, Table: plan.top.table,
			Detail: "the transform rejects the current Mongo document, so the sink cannot have applied it: " + clip(d.rejErr.Error())}})
	}
	if !exists || len(out) > 0 {
		return out
	}
	diffs := r.valueDiffs(d, row, pgID, info)
	if len(diffs) == 0 {
		return out
	}
	return append(out, problem{checkDiff, summarizeDiffs(diffs)})
}

// presenceProblems are the id_map problems of a live document: its key's
// form, and whether it has an entry and a live row. Values are compared
// only without them (a missing row has no values to compare).
func (r *collRun) presenceProblems(d *docState, row *pgRow, pgID string) []problem {
	plan := r.plan
	var out []problem
	if k := ownKey(d.raw); k != "" && k != d.key {
		out = append(out, problem{checkIDMapToPG, Example{ID: d.key, Mongo: k, Detail: fmt.Sprintf(
			"the document's key %q is not its ObjectId's lower-case hex %s, the form its id_map entry must have", d.key, k)}})
	}
	switch {
	case plan.uuidID && (row == nil || row.newID == ""):
		out = append(out, problem{checkIDMapToPG, Example{ID: d.key, Table: "id_map", Detail: "live Mongo document has no id_map entry"}})
	case row == nil || !row.exists:
		out = append(out, problem{checkIDMapToPG, Example{ID: d.key, PGID: pgID, Table: plan.top.table, Detail: "live Mongo document has an id_map entry but no row"}})
	case row.deleted:
		out = append(out, problem{checkIDMapToPG, Example{ID: d.key, PGID: pgID, Table: plan.top.table,
			Detail: fmt.Sprintf("row is soft-deleted (%s) but the Mongo document is live", plan.soft)}})
	}
	return out
}

// valueDiffs lists every column of the row and its child tables that
// differs from what the sink must have written, so that the report can
// name them all in one example.
func (r *collRun) valueDiffs(d *docState, row *pgRow, pgID string, info *roundInfo) []Example {
	plan := r.plan
	var diffs []Example
	own := d.own
	if own == nil {
		own = &ownRow{}
	}
	expVals := r.expectedValues(&plan.top, d.row.Values, d.row.Refs, own.top, info)
	for i, c := range plan.top.cols {
		want, got := expVals[i], row.vals[i]
		if c.kind == kRef {
			got = r.storedRef(c, got, info)
		}
		if want != got {
			diffs = append(diffs, Example{ID: d.key, PGID: pgID, Table: plan.top.table, Column: c.name,
				Mongo: clip(want.String()), Postgres: clip(got.String()), Detail: valueHint(c, want, got)})
			continue
		}
		// A reference stored NULL under policy null must be recorded.
		if c.kind == kRef && want.null && c.spec.Ref.Missing == transform.MissingNull {
			if ex, ok := r.unrecordedNull(d, pgID, own, i, c, info); ok {
				diffs = append(diffs, ex)
			}
		}
	}
	for ci := range plan.children {
		ch := &plan.children[ci]
		var stored [][]cval
		if row.children != nil {
			stored = row.children[ci]
		}
		var ownRows [][]ownVal
		ownErr := ""
		if ci < len(own.children) {
			ownRows, ownErr = own.children[ci], own.childErr[ci]
		}
		if ex, ok := r.compareChildren(d, pgID, ch, d.row.Children[ci], ownRows, ownErr, stored, info); !ok {
			diffs = append(diffs, ex)
		}
	}
	return diffs
}

// unrecordedNull reports top column i, a reference rightly stored NULL
// under policy null, when the sink kept no cdc.dangling_refs record of the
// legacy id it dropped: without the record the reference cannot be
// restored once its parent arrives.
func (r *collRun) unrecordedNull(d *docState, pgID string, own *ownRow, i int, c colPlan, info *roundInfo) (Example, bool) {
	legacy := ""
	if ref, ok := refAt(d.row.Refs, i); ok {
		legacy = ref.LegacyID
	}
	if i < len(own.top) && own.top[i].set {
		legacy = own.top[i].ref
	}
	if legacy == "" {
		return Example{}, false
	}
	if rec, ok := info.dangling[d.key+"/"+c.name]; !ok || rec != legacy {
		return Example{ID: d.key, PGID: pgID, Table: r.plan.top.table, Column: c.name, Mongo: legacy, Postgres: "NULL",
			Detail: "NULL reference to a missing parent without its cdc.dangling_refs record"}, true
	}
	return Example{}, false
}

// summarizeDiffs folds a document's differing columns into one example
// (the first, naming the others), so a document counts once.
func summarizeDiffs(diffs []Example) Example {
	ex := diffs[0]
	var cols []string
	for _, e := range diffs {
		cols = append(cols, e.Table+"."+e.Column)
	}
	if ex.Detail == "" {
		ex.Detail = "values differ"
	}
	if len(diffs) > 1 {
		ex.Detail += fmt.Sprintf("; %d columns differ: %s", len(diffs), strings.Join(cols, ", "))
	}
	return ex
}

func refAt(refs []transform.Ref, col int) (transform.Ref, bool) {
	for _, r := range refs {
		if r.Col == col {
			return r, true
		}
	}
	return transform.Ref{}, false
}

// expectedValues is the canonical row the sink must have written: the
// values verify decoded itself (own, where set) and otherwise the
// transformed values and references. A reference is its parent's legacy
// id, or NULL under policy null while the parent has no row.
func (r *collRun) expectedValues(tp *tablePlan, vals []any, refs []transform.Ref, own []ownVal, info *roundInfo) []cval {
	out := make([]cval, len(tp.cols))
	for i, c := range tp.cols {
		out[i] = c.kind.expected(vals[i])
	}
	for _, ref := range refs {
		if ref.Missing == transform.MissingNull && !info.present[ref.Collection+"/"+ref.LegacyID] {
			out[ref.Col] = null
			continue
		}
		out[ref.Col] = cval{s: ref.LegacyID}
	}
	for i, o := range own {
		if !o.set {
			continue
		}
		c := tp.cols[i]
		switch {
		case c.kind == kRef && o.ref != "":
			if c.spec.Ref.Missing == transform.MissingNull && !info.present[c.spec.Ref.Collection+"/"+o.ref] {
				out[i] = null
			} else {
				out[i] = cval{s: o.ref}
			}
		default:
			out[i] = o.v
		}
	}
	return out
}

// valueHint explains a difference where the values say more than
// "values differ": a time off by whole hours (a time zone), or below the
// millisecond a BSON date has.
func valueHint(c colPlan, want, got cval) string {
	if c.kind != kTime || want.null || got.null {
		return ""
	}
	w, err1 := time.Parse(canonTime, want.s)
	g, err2 := time.Parse(canonTime, got.s)
	if err1 != nil || err2 != nil {
		return ""
	}
	diff := g.Sub(w)
	switch {
	case diff%time.Hour == 0 || diff%(30*time.Minute) == 0:
		return fmt.Sprintf("values differ: Postgres is off by %s (a time zone applied to a UTC time?)", diff)
	case diff.Abs() < time.Millisecond || g.Sub(g.Truncate(time.Millisecond)) != 0:
		return fmt.Sprintf("values differ: Postgres is off by %s, below the millisecond a BSON date has", diff)
	}
	return ""
}

// storedRef resolves a stored uuid to the legacy id it stands for in the
// column's referenced collection.
func (r *collRun) storedRef(c colPlan, v cval, info *roundInfo) cval {
	if v.null {
		return v
	}
	e, ok := info.uuids[v.s]
	switch {
	case !ok:
		return cval{s: "uuid " + v.s + " (no id_map entry)"}
	case e.coll != c.spec.Ref.Collection:
		return cval{s: fmt.Sprintf("uuid %s (id_map: %s/%s)", v.s, e.coll, e.legacy)}
	}
	return cval{s: e.legacy}
}

// compareChildren compares a child set as a multiset of rows. own are
// verify's own values of the transform's rows (nil: none; ownErr says why
// the document's elements could not be aligned with them, itself a
// difference).
func (r *collRun) compareChildren(d *docState, pgID string, ch *childPlan, want transform.ChildSet, own [][]ownVal, ownErr string, stored [][]cval, info *roundInfo) (Example, bool) {
	if ownErr != "" {
		return Example{ID: d.key, PGID: pgID, Table: ch.table, Column: ch.spec.Field,
			Detail: fmt.Sprintf("child set %s: %s", ch.table, ownErr)}, false
	}
	render := func(vals []cval) string {
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = ch.cols[i].name + "=" + v.String()
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	counts := map[string]int{}
	for j, cr := range want.Rows {
		var o []ownVal
		if j < len(own) {
			o = own[j]
		}
		counts[render(r.expectedValues(&ch.tablePlan, cr.Values, cr.Refs, o, info))]++
	}
	for _, vals := range stored {
		res := make([]cval, len(vals))
		for i, v := range vals {
			if ch.cols[i].kind == kRef {
				v = r.storedRef(ch.cols[i], v, info)
			}
			res[i] = v
		}
		counts[render(res)]--
	}
	var missing, extra []string
	for k, n := range counts {
		for ; n > 0; n-- {
			missing = append(missing, k)
		}
		for ; n < 0; n++ {
			extra = append(extra, k)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return Example{}, true
	}
	sort.Strings(missing)
	sort.Strings(extra)
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d child row(s) missing in Postgres: %s", len(missing), clip(strings.Join(missing, "; "))))
	}
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("%d child row(s) in Postgres but not in the document: %s", len(extra), clip(strings.Join(extra, "; "))))
	}
	return Example{ID: d.key, PGID: pgID, Table: ch.table, Column: ch.spec.Field,
		Detail: fmt.Sprintf("child set %s (%d rows in Mongo, %d in Postgres) differs: %s", ch.table, len(want.Rows), len(stored), strings.Join(parts, "; "))}, false
}

// fingerprint identifies a mismatch: the Mongo document, the row's
// applied version and what differs.
func fingerprint(d *docState, row *pgRow, probs []problem) string {
	h := fnv.New64a()
	h.Write(d.raw)
	if row != nil {
		fmt.Fprintf(h, "|%d|%t|%t|%s", row.version, row.exists, row.deleted, row.newID)
	}
	for _, p := range probs {
		fmt.Fprintf(h, "|%s|%s|%s|%s|%s", p.check, p.ex.Column, p.ex.Mongo, p.ex.Postgres, p.ex.Detail)
	}
	return fmt.Sprintf("%x", h.Sum64())
}
