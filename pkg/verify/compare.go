package verify

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/bson"

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
	// data: compare values (else only presence, in sample mode).
	data bool
	// candidate is the fingerprint of a mismatch already seen once after
	// the sink passed the read; seeing it again confirms it.
	candidate string
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
	d.row, d.rejErr = nil, nil
	if raw != nil && d.data {
		d.row, d.rejErr = plan.m.Row(raw)
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
	var out []problem
	switch {
	case plan.uuidID && (row == nil || row.newID == ""):
		out = append(out, problem{checkIDMapToPG, Example{ID: d.key, Table: "id_map", Detail: "live Mongo document has no id_map entry"}})
	case row == nil || !row.exists:
		out = append(out, problem{checkIDMapToPG, Example{ID: d.key, PGID: pgID, Table: plan.top.table, Detail: "live Mongo document has an id_map entry but no row"}})
	case row.deleted:
		out = append(out, problem{checkIDMapToPG, Example{ID: d.key, PGID: pgID, Table: plan.top.table,
			Detail: fmt.Sprintf("row is soft-deleted (%s) but the Mongo document is live", plan.soft)}})
	}
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
	var diffs []Example
	expVals := r.expectedValues(&plan.top, d.row.Values, d.row.Refs, info)
	for i, c := range plan.top.cols {
		want, got := expVals[i], row.vals[i]
		if c.kind == kRef {
			got = r.storedRef(c, got, info)
		}
		if want != got {
			diffs = append(diffs, Example{ID: d.key, PGID: pgID, Table: plan.top.table, Column: c.name,
				Mongo: clip(want.String()), Postgres: clip(got.String())})
			continue
		}
		// A reference stored NULL under policy null must be recorded.
		if c.kind == kRef && want.null && plan.nullRefs {
			if ref, ok := refAt(d.row.Refs, i); ok && ref.Missing == transform.MissingNull {
				if rec, ok := info.dangling[d.key+"/"+c.name]; !ok || rec != ref.LegacyID {
					diffs = append(diffs, Example{ID: d.key, PGID: pgID, Table: plan.top.table, Column: c.name, Mongo: ref.LegacyID, Postgres: "NULL",
						Detail: "NULL reference to a missing parent without its cdc.dangling_refs record"})
				}
			}
		}
	}
	for ci := range plan.children {
		ch := &plan.children[ci]
		var stored [][]cval
		if row.children != nil {
			stored = row.children[ci]
		}
		if ex, ok := r.compareChildren(d, pgID, ch, d.row.Children[ci], stored, info); !ok {
			diffs = append(diffs, ex)
		}
	}
	if len(diffs) == 0 {
		return out
	}
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
	return append(out, problem{checkDiff, ex})
}

func refAt(refs []transform.Ref, col int) (transform.Ref, bool) {
	for _, r := range refs {
		if r.Col == col {
			return r, true
		}
	}
	return transform.Ref{}, false
}

// expectedValues is the canonical row the sink must have written for
// transformed values and references: a reference is its parent's legacy
// id, or NULL under policy null while the parent has no row.
func (r *collRun) expectedValues(tp *tablePlan, vals []any, refs []transform.Ref, info *roundInfo) []cval {
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
	return out
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

// compareChildren compares a child set as a multiset of rows.
func (r *collRun) compareChildren(d *docState, pgID string, ch *childPlan, want transform.ChildSet, stored [][]cval, info *roundInfo) (Example, bool) {
	render := func(vals []cval) string {
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = ch.cols[i].name + "=" + v.String()
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	counts := map[string]int{}
	for _, cr := range want.Rows {
		counts[render(r.expectedValues(&ch.tablePlan, cr.Values, cr.Refs, info))]++
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
