package replay

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/report"
)

// Gaps refreshes the documents of the open rows of the application's
// dual-write gap log (pg_dualwrite_gaps, resolved_at IS NULL; collection
// and legacy_object_id name the document) and marks those rows resolved.
//
// When: only after the refresh of a row's document was acknowledged by
// JetStream and, with applyTimeout > 0, applied by the live sink (its
// version guard reached the refresh's position, or a newer one) within
// applyTimeout. A document still pending then, or dead-lettered, leaves
// its rows open and counts as an error; so do rows of collections without
// a transform. With applyTimeout 0 rows are resolved once JetStream
// acknowledged the refresh (the sink applies it later). How: one UPDATE
// ... SET resolved_at = now() WHERE id = ANY(...) AND resolved_at IS NULL,
// so a row resolved meanwhile by someone else keeps its time, and a gap
// logged after the read stays open for the next run.
func (r *Refresher) Gaps(ctx context.Context, applyTimeout time.Duration) (*report.Report, error) {
	rep := &report.Report{Command: "replay ids --from-gaps-table", DryRun: r.cfg.DryRun}
	rows, err := r.pool.Query(ctx, `SELECT id, collection, legacy_object_id FROM pg_dualwrite_gaps
		WHERE resolved_at IS NULL ORDER BY id`)
	if err != nil {
		return rep, fmt.Errorf("read pg_dualwrite_gaps: %w", err)
	}
	gapIDs := map[DocRef][]int64{}
	var colls []string
	byColl := map[string][]string{}
	total := 0
	for rows.Next() {
		var id int64
		var ref DocRef
		var raw string
		if err := rows.Scan(&id, &ref.Collection, &raw); err != nil {
			rows.Close()
			return rep, fmt.Errorf("read pg_dualwrite_gaps: %w", err)
		}
		total++
		// The application logs keys in its own form (an upper-case hex
		// ObjectId, Extended JSON of a number): read them as operator
		// input and key them as the sink does, or the refresh would be
		// applied and the gap row never resolved.
		key, err := event.CanonicalKey(raw)
		if err != nil {
			rep.Errors++
			rep.Note("pg_dualwrite_gaps row %d: %v: left open", id, err)
			continue
		}
		ref.Key = key
		if _, ok := gapIDs[ref]; !ok {
			if _, seen := byColl[ref.Collection]; !seen {
				colls = append(colls, ref.Collection)
			}
			byColl[ref.Collection] = append(byColl[ref.Collection], ref.Key)
		}
		gapIDs[ref] = append(gapIDs[ref], id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("read pg_dualwrite_gaps: %w", err)
	}
	sort.Strings(colls)
	rep.Note("pg_dualwrite_gaps: %d open rows for %d documents", total, len(gapIDs))
	awaited := map[DocRef]Awaited{}
	for _, c := range colls {
		if _, ok := r.set.Get(c); !ok {
			n := 0
			for _, k := range byColl[c] {
				n += len(gapIDs[DocRef{c, k}])
			}
			rep.Errors += int64(n)
			rep.Note("%s: no transform maps this collection: %d gap rows left open", c, n)
			continue
		}
		aw, err := r.Refresh(ctx, c, byColl[c], rep)
		for k, v := range aw {
			awaited[k] = v
		}
		if err != nil {
			return rep, err
		}
	}
	if r.cfg.DryRun {
		rep.Note("would mark the rows resolved once their refresh is applied")
		return rep, nil
	}
	done := make([]DocRef, 0, len(awaited))
	for ref := range awaited {
		done = append(done, ref)
	}
	if applyTimeout > 0 && len(awaited) > 0 {
		pending, dead, err := WaitApplied(ctx, r.pool, awaited, applyTimeout)
		if err != nil {
			return rep, err
		}
		skip := map[DocRef]bool{}
		for _, p := range pending {
			skip[p] = true
			rep.Errors++
			rep.Note("%s %s: refresh not applied within %s: gap left open", p.Collection, p.Key, applyTimeout)
		}
		for _, d := range dead {
			skip[d] = true
			rep.Errors++
			rep.Note("%s %s: refresh dead-lettered (see cdc dlq list): gap left open", d.Collection, d.Key)
		}
		done = done[:0]
		for ref := range awaited {
			if !skip[ref] {
				done = append(done, ref)
			}
		}
	}
	var ids []int64
	for _, ref := range done {
		ids = append(ids, gapIDs[ref]...)
	}
	if len(ids) == 0 {
		return rep, nil
	}
	tag, err := r.pool.Exec(ctx, `UPDATE pg_dualwrite_gaps SET resolved_at = now() WHERE id = ANY($1) AND resolved_at IS NULL`, ids)
	if err != nil {
		rep.Errors++
		return rep, fmt.Errorf("mark pg_dualwrite_gaps resolved: %w", err)
	}
	rep.Note("marked %d gap rows resolved", tag.RowsAffected())
	return rep, nil
}
